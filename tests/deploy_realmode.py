"""Run deploy/install.sh in REAL mode without changing the host, for tests/test_deploy.py.

The installer runs as root inside a chroot whose root is an overlay of the host's / (upper
layer on a tmpfs, in a private mount namespace): apt-get, useradd, pip and guwah really run,
and every write lands in the throw-away upper layer. What needs a running systemd or would
reach outside the overlay is replaced by small stubs that record their arguments in
/var/log/guwah-stub.log:

* ``systemctl``: records; "restarting" tor writes a made-up onion hostname;
* ``systemd-run``: runs the command as the requested user with the EnvironmentFile, a private
  TMPDIR and umask 0077 (what /usr/local/sbin/guwah asks systemd for);
* ``nft``: only checks (``nft -c``), never loads rules into the host's firewall;
* ``apparmor_parser``: parses without loading into the kernel (``-Q -K``).

The source tree is copied into the overlay; the script to run inside is given as text.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

STUBS = {
    "systemctl": """#!/bin/sh
echo "systemctl $*" >> /var/log/guwah-stub.log
case "$*" in
*tor@default*)
	mkdir -p /var/lib/tor/guwah
	echo "guwahtestaddressguwahtestaddressguwahtestaddressguwahtest.onion" \\
		> /var/lib/tor/guwah/hostname ;;
esac
exit 0
""",
    "nft": """#!/bin/sh
echo "nft $*" >> /var/log/guwah-stub.log
if [ "$1" = "-f" ]; then exec /usr/sbin/nft -c -f "$2"; fi
exit 0
""",
    "apparmor_parser": """#!/bin/sh
echo "apparmor_parser $*" >> /var/log/guwah-stub.log
exec /usr/sbin/apparmor_parser -Q -K "$@" 2>/dev/null
""",
    "aa-enabled": "#!/bin/sh\nexit 0\n",
    "systemd-run": """#!/bin/bash
set -euo pipefail
echo "systemd-run $*" >> /var/log/guwah-stub.log
uid="" gid="" envfile="" dir=$PWD
while [[ $1 != -- ]]; do
	case $1 in
	--uid=*) uid=${1#--uid=} ;;
	--gid=*) gid=${1#--gid=} ;;
	--property=EnvironmentFile=*) envfile=${1#--property=EnvironmentFile=}; envfile=${envfile#-} ;;
	--working-directory=*) dir=${1#--working-directory=} ;;
	esac
	shift
done
shift
tmp=$(mktemp -d)
chown "$uid:$gid" "$tmp"
chmod 0700 "$tmp"
vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TMPDIR="$tmp")
if [[ -f $envfile ]]; then
	while IFS= read -r line; do
		[[ -z $line || $line == \\#* ]] && continue
		vars+=("$line")
	done <"$envfile"
fi
cd "$dir"
rc=0
(umask 0077; setpriv --reuid="$uid" --regid="$gid" --clear-groups env -i "${vars[@]}" "$@") || rc=$?
rm -rf "$tmp"
exit $rc
""",
}

OUTER = r"""
set -euo pipefail
work=$1 src=$2
mount -t tmpfs tmpfs "$work/ovl"
mkdir -p "$work/ovl/upper" "$work/ovl/work" "$work/ovl/merged"
mount -t overlay overlay \
	-o "lowerdir=/,upperdir=$work/ovl/upper,workdir=$work/ovl/work" "$work/ovl/merged"
M=$work/ovl/merged
mount --bind /proc "$M/proc"
mount --bind /dev "$M/dev"
mount --bind /sys "$M/sys"
mount -t tmpfs tmpfs "$M/run"
mkdir -p "$M/run/systemd/system"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mkdir -p "$M/stubs" "$M/tmp/src"
cp "$work"/stubs/* "$M/stubs/"
cp "$work/inner.sh" "$work/alice.pub" "$M/tmp/"
printf '#!/bin/sh\nexit 101\n' >"$M/usr/sbin/policy-rc.d"
chmod 755 "$M/usr/sbin/policy-rc.d"
tar -C "$src" --exclude=./.venv --exclude=./.git --exclude=node_modules \
	--exclude=__pycache__ -cf - . | tar -C "$M/tmp/src" -xf -
exec chroot "$M" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
	PATH=/stubs:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	bash -c 'cd / && exec bash /tmp/inner.sh'
"""


def run_in_overlay(
    work: Path, source: Path, editor_key: Path, inner: str, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    """Run ``inner`` (bash) as root in a chroot over an overlay of /; the host stays as it is.

    Inside: the source tree is at /tmp/src, the editor key at /tmp/alice.pub.
    """
    (work / "ovl").mkdir(parents=True)
    stubs = work / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (work / "inner.sh").write_text(inner)
    (work / "alice.pub").write_bytes(editor_key.read_bytes())
    cmd = [
        "unshare",
        "--mount",
        "--fork",
        "--",
        "bash",
        "-c",
        OUTER,
        "outer",
        str(work),
        str(source),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def quote(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)
