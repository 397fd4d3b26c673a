#!/bin/sh
# preflight: checks that this machine can become a cocalc-hosts project
# host, before anything is uploaded or changed, and reports facts the
# control plane needs. Prints KEY=value lines; a problem is one
# "ERROR: ..." line and exit status 1. Runs as root.
#
# Usage: preflight HOST_ID
set -eu

host_id=${1:?usage: preflight HOST_ID}
AGENT_BIN=/usr/local/bin/cocalc-hosts
AGENT_CONFIG=/etc/cocalc-hosts/agent.json
STATE_DIR=/var/lib/cocalc-hosts

fail() {
	echo "ERROR: $*"
	exit 1
}

os=$(uname -s)
[ "$os" = Linux ] || fail "unsupported operating system $os; cocalc-hosts project hosts run Linux (Debian 11+ or Ubuntu 22.04+)"
arch=$(uname -m)
case "$arch" in
x86_64 | aarch64) ;;
*) fail "unsupported CPU architecture $arch; cocalc-hosts project hosts are x86_64 or aarch64" ;;
esac

[ -r /etc/os-release ] || fail "no /etc/os-release, so the distribution is unknown; cocalc-hosts bootstraps Debian 11+ and Ubuntu 22.04+"
# shellcheck source=/dev/null
. /etc/os-release
id=${ID:-unknown}
ver=${VERSION_ID:-}
major=${ver%%.*}
supported=0
case "$id" in
debian)
	# testing and sid have no VERSION_ID
	if [ -z "$ver" ] || [ "$major" -ge 11 ] 2>/dev/null; then supported=1; fi
	;;
ubuntu)
	if [ "$major" -ge 22 ] 2>/dev/null; then supported=1; fi
	;;
*)
	case " ${ID_LIKE:-} " in
	*" debian "* | *" ubuntu "*) supported=1 ;;
	esac
	;;
esac
[ "$supported" = 1 ] || fail "unsupported distribution ${PRETTY_NAME:-$id} (ID=$id VERSION_ID=${ver:-none}); cocalc-hosts bootstraps Debian 11+, Ubuntu 22.04+ and distributions based on them"

# A machine can be one host only: two agents would share the socket,
# the pool and the service.
if [ -f "$AGENT_CONFIG" ]; then
	other=$(sed -n 's/.*"host_id": *"\([^"]*\)".*/\1/p' "$AGENT_CONFIG" | head -n 1)
	if [ -n "$other" ] && [ "$other" != "$host_id" ]; then
		fail "this machine is already project host $other; delete that host first (cocalc-hosts delete), or, if no control plane knows it any more, remove $AGENT_CONFIG on this machine and retry"
	fi
fi

if [ -d /run/systemd/system ]; then init=systemd; else init=other; fi
sha=""
[ -f "$AGENT_BIN" ] && sha=$(sha256sum "$AGENT_BIN" | cut -d' ' -f1)
# The marker of a finished bootstrap, when its files are all still there:
# with the same settings, nothing needs uploading.
marker=""
if [ -f "$STATE_DIR/bootstrap.done" ] && [ -f "$STATE_DIR/bootstrap/bootstrap.sh" ] && [ -f "$AGENT_CONFIG" ]; then
	marker=$(cat "$STATE_DIR/bootstrap.done")
fi
mkdir -p /usr/local/bin "$STATE_DIR"
echo "OS=$os"
echo "ARCH=$arch"
echo "DISTRO=$id"
echo "DISTRO_VERSION=$ver"
echo "INIT=$init"
echo "AGENT_SHA256=$sha"
echo "MARKER=$marker"
if command -v gzip >/dev/null 2>&1; then echo "GZIP=yes"; else echo "GZIP=no"; fi
echo "BIN_AVAIL_KB=$(df -Pk /usr/local/bin | awk 'NR==2 {print $4}')"
echo "STATE_AVAIL_KB=$(df -Pk "$STATE_DIR" | awk 'NR==2 {print $4}')"
