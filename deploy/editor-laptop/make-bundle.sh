#!/usr/bin/env bash
# Builds, on a connected machine, a folder that installs `guwah-editor` on an air-gapped
# laptop: wheels of guwah (base install, no [server] extra) and of its dependencies for the
# laptop's Python and platform, a requirements.txt pinning each by SHA-256, SHA256SUMS over
# the whole folder, and an install.sh that never touches the network.
# See docs/operator-guide.md ("Editor laptops").
set -euo pipefail
umask 022
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

OUT=""
SOURCE_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
PYTHON=${PYTHON:-python3}
PY_VERSION=""
PLATFORMS=()
WITH_TOOLS=0
TOOL_PACKAGES=(ffmpeg libimage-exiftool-perl)

usage() {
	cat <<'EOF'
Usage: make-bundle.sh --out DIR [OPTIONS]

Options:
  --out DIR               folder to create (must not exist or be empty)
  --python-version X.Y    Python of the editor laptop (default: this machine's)
  --platform TAG          wheel platform tag of the laptop, repeatable
                          (default: this machine's, e.g. manylinux_2_36_x86_64;
                          older manylinux tags are accepted automatically)
  --source DIR            guwah source tree (default: the repository this script is in)
  --python PATH           Python used to run pip here (default: python3)
  --with-media-tools      also bundle the Debian packages ffmpeg and libimage-exiftool-perl
                          with all their dependencies (about 250 MB) for a laptop on the
                          same Debian release and architecture as this machine
  -h, --help              show this help

Copy DIR to the laptop (USB stick) and run: sh DIR/install.sh [VENV_DIR]
With --with-media-tools, also (as root): sh DIR/install-tools.sh
EOF
}

die() {
	printf 'make-bundle: error: %s\n' "$*" >&2
	exit 1
}

while [[ $# -gt 0 ]]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--with-media-tools) WITH_TOOLS=1 ;;
	--out | --python-version | --platform | --source | --python)
		[[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
		case $1 in
		--out) OUT=$2 ;;
		--python-version) PY_VERSION=$2 ;;
		--platform) PLATFORMS+=("$2") ;;
		--source) SOURCE_DIR=$2 ;;
		--python) PYTHON=$2 ;;
		esac
		shift
		;;
	*) die "unknown option: $1 (see --help)" ;;
	esac
	shift
done

[[ -n $OUT ]] || die "--out DIR is required (see --help)"
[[ -f $SOURCE_DIR/pyproject.toml ]] || die "--source $SOURCE_DIR: no pyproject.toml there"
command -v "$PYTHON" >/dev/null || die "cannot run $PYTHON"
if [[ -z $PY_VERSION ]]; then
	PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
fi
[[ $PY_VERSION =~ ^3\.[0-9]+$ ]] || die "--python-version must look like 3.11"
if ((${#PLATFORMS[@]} == 0)); then
	glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}' | tr . _)
	PLATFORMS=("manylinux_${glibc}_$(uname -m)")
fi
if [[ -e $OUT ]] && [[ -n $(ls -A -- "$OUT") ]]; then
	die "--out $OUT exists and is not empty"
fi
mkdir -p -- "$OUT/wheels"
OUT=$(cd -- "$OUT" && pwd)
PY_TAG=${PY_VERSION//./}

# Reproducible guwah wheel: fixed timestamps inside the zip.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$SOURCE_DIR" log -1 --format=%ct 2>/dev/null || echo 315532800)
	export SOURCE_DATE_EPOCH
fi

pip() { "$PYTHON" -m pip --disable-pip-version-check "$@"; }

echo "make-bundle: building the guwah wheel from $SOURCE_DIR"
build=$(mktemp -d)
trap 'rm -rf -- "$build"' EXIT
pip wheel --quiet --no-deps --wheel-dir "$build" "$SOURCE_DIR"
guwah_wheel=$(find "$build" -maxdepth 1 -name 'guwah-*.whl' | head -n 1)
[[ -n $guwah_wheel ]] || die "pip wheel produced no guwah wheel"
cp -- "$guwah_wheel" "$OUT/wheels/"

# pip takes platform tags literally: spell out every older manylinux tag a laptop with this
# glibc also accepts (manylinux_2_36 runs manylinux_2_17 wheels).
platform_args=()
for p in "${PLATFORMS[@]}"; do
	if [[ $p =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
		arch=${BASH_REMATCH[2]}
		for ((minor = BASH_REMATCH[1]; minor >= 17; minor--)); do
			platform_args+=(--platform "manylinux_2_${minor}_$arch")
		done
		platform_args+=(--platform "manylinux2014_$arch")
	else
		platform_args+=(--platform "$p")
	fi
done
echo "make-bundle: downloading dependency wheels for Python $PY_VERSION on ${PLATFORMS[*]}"
# The base requirement only: the editor tool must not pull in the web stack.
pip download --quiet --only-binary=:all: "${platform_args[@]}" \
	--python-version "$PY_VERSION" --implementation cp --abi "cp$PY_TAG" --abi abi3 --abi none \
	--dest "$OUT/wheels" "$OUT/wheels/$(basename -- "$guwah_wheel")"

# requirements.txt: every wheel pinned by version and hash (pip install --require-hashes).
{
	echo "# guwah-editor offline bundle for Python $PY_VERSION on ${PLATFORMS[*]}."
	echo "# Every wheel in wheels/ is pinned by SHA-256; pip refuses anything else."
	for whl in "$OUT"/wheels/*.whl; do
		base=$(basename -- "$whl")
		name=${base%%-*}
		rest=${base#*-}
		version=${rest%%-*}
		hash=$(pip hash --algorithm sha256 "$whl" | sed -n 's/^--hash=//p')
		[[ -n $hash ]] || die "pip hash failed for $base"
		printf '%s==%s --hash=%s\n' "$name" "$version" "$hash"
	done
} >"$OUT/requirements.txt"

cat >"$OUT/install.sh" <<EOF
#!/bin/sh
# Installs guwah-editor from this folder on an offline laptop. Never uses the network:
# pip may only take the wheels in wheels/, and only those whose SHA-256 is in requirements.txt.
# Usage: sh install.sh [VENV_DIR]   (default: \$HOME/.local/share/guwah-editor/venv)
set -eu
HERE=\$(cd "\$(dirname "\$0")" && pwd)
VENV=\${1:-\$HOME/.local/share/guwah-editor/venv}
PYTHON=\${PYTHON:-python3}
want=$PY_VERSION
have=\$("\$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "\$have" != "\$want" ]; then
	echo "install.sh: this bundle is for Python \$want but \$PYTHON is \$have; build one with --python-version \$have" >&2
	exit 1
fi
if command -v sha256sum >/dev/null 2>&1; then
	(cd "\$HERE" && sha256sum --quiet --check SHA256SUMS) || {
		echo "install.sh: the bundle does not match SHA256SUMS (damaged or altered copy)" >&2
		exit 1
	}
fi
# Only this folder counts: ignore any pip configuration or PIP_* variables of this machine.
for v in \$(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "\$v"; done
export PIP_CONFIG_FILE=/dev/null
"\$PYTHON" -m venv "\$VENV"
PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "\$VENV/bin/python" -m pip install --quiet \\
	--no-index --no-cache-dir --find-links "\$HERE/wheels" --require-hashes --only-binary=:all: \\
	-r "\$HERE/requirements.txt"
"\$VENV/bin/guwah-editor" --help >/dev/null
echo "guwah-editor installed: \$VENV/bin/guwah-editor"
EOF
chmod 0755 "$OUT/install.sh"

if ((WITH_TOOLS)); then
	for tool in apt-get apt-cache dpkg-scanpackages; do
		command -v "$tool" >/dev/null || die "--with-media-tools needs $tool (Debian: apt, dpkg-dev)"
	done
	# shellcheck source=/dev/null
	release=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
	arch=$(dpkg --print-architecture)
	echo "make-bundle: downloading ${TOOL_PACKAGES[*]} and their dependencies (Debian $release, $arch)"
	mkdir -p -- "$OUT/debs"
	mapfile -t debs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "${TOOL_PACKAGES[@]}" | grep -E '^[a-z0-9]' | sort -u)
	(cd -- "$OUT/debs" && apt-get download -q "${debs[@]}" >/dev/null) ||
		die "apt-get download failed (run 'apt-get update' first?)"
	(cd -- "$OUT/debs" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
	cat >"$OUT/install-tools.sh" <<EOF
#!/bin/sh
# Installs ${TOOL_PACKAGES[*]} (for guwah-editor scrub) from this folder's debs/ on an
# offline Debian $release ($arch) laptop. Run as root. apt reads only debs/ (a private package
# list, no network source); the bundle is checked against SHA256SUMS first.
set -eu
HERE=\$(cd "\$(dirname "\$0")" && pwd)
want="$release $arch"
# shellcheck source=/dev/null
have="\$(. /etc/os-release && echo "\${VERSION_CODENAME:-unknown}") \$(dpkg --print-architecture)"
if [ "\$have" != "\$want" ]; then
	echo "install-tools.sh: these packages are for Debian \$want, this laptop is \$have" >&2
	exit 1
fi
if [ "\$(id -u)" -ne 0 ]; then
	echo "install-tools.sh: run it as root (sudo sh install-tools.sh)" >&2
	exit 1
fi
(cd "\$HERE" && sha256sum --quiet --check SHA256SUMS) || {
	echo "install-tools.sh: the bundle does not match SHA256SUMS (damaged or altered copy)" >&2
	exit 1
}
work=\$(mktemp -d)
trap 'rm -rf "\$work"' EXIT
mkdir -p "\$work/lists/partial"
echo "deb [trusted=yes] file:\$HERE/debs ./" >"\$work/sources.list"
set -- -o Dir::Etc::SourceList="\$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \\
	-o Dir::State::Lists="\$work/lists" -o APT::Get::List-Cleanup=0
apt-get -q "\$@" update
DEBIAN_FRONTEND=noninteractive apt-get -q -y "\$@" install ${TOOL_PACKAGES[*]}
ffmpeg -version >/dev/null && exiftool -ver >/dev/null
echo "install-tools.sh: installed ${TOOL_PACKAGES[*]}"
EOF
	chmod 0755 "$OUT/install-tools.sh"
fi

sums=$(cd "$OUT" && find . -type f | sed 's#^\./##' | sort | xargs -d '\n' sha256sum)
printf '%s\n' "$sums" >"$OUT/SHA256SUMS"
echo "make-bundle: done: $OUT ($(find "$OUT/wheels" -name '*.whl' | wc -l) wheels)"
echo "make-bundle: SHA-256 of SHA256SUMS (compare on the laptop): $(sha256sum "$OUT/SHA256SUMS" | cut -d' ' -f1)"
