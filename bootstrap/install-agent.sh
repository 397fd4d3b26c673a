#!/bin/sh
# install-agent: installs the agent binary read from stdin at DEST, after
# checking its sha256, by an atomic rename: a running agent keeps its old
# binary until it restarts, and a failed upload (a full disk, a dropped
# connection) leaves nothing behind. Runs as root.
#
# Usage: install-agent DEST SHA256 [gzip] < binary
# With "gzip", stdin is gzip-compressed (it travels faster).
set -eu
dest=${1:?usage: install-agent DEST SHA256 [gzip]}
want=${2:?usage: install-agent DEST SHA256 [gzip]}
compressed=${3:-}
mkdir -p "$(dirname "$dest")"
tmp="$dest.upload.$$"
trap 'rm -f "$tmp"' EXIT
if [ "$compressed" = gzip ]; then
	unpack() { gzip -dc; }
else
	unpack() { cat; }
fi
if ! unpack >"$tmp"; then
	echo "ERROR: writing the agent to $tmp failed (see above); free some space on $(dirname "$dest") and retry"
	exit 1
fi
got=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
	echo "ERROR: the uploaded agent has sha256 $got, not $want: the upload was damaged; retry"
	exit 1
fi
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
echo "installed $dest (sha256 $want)"
