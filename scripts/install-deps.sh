#!/bin/sh
# Installs the system packages cocalc-hosts and its tests use on Debian 12.
# Idempotent: packages already present are left alone. Services are not
# started: tests start their own throwaway Postgres cluster and sshd.
set -eu
need=""
for pkg in postgresql btrfs-progs podman runc restic openssh-server openssh-client rclone \
	iproute2 util-linux mmdebstrap uidmap ca-certificates git shellcheck e2fsprogs systemd jq rsync wrk curl; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	echo "note: add /usr/local/go/bin to PATH" >&2
fi
