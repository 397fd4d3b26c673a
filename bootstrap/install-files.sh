#!/bin/sh
# install-files: installs the files of a tar archive read from stdin at
# their paths under /, owned by root with the archive's modes, each by an
# atomic rename so that nothing ever reads a half-written config or
# secret. Directories it makes are root-only. Secrets in SECRETS_DIR that
# are not named on the command line are removed. Runs as root.
#
# Usage: install-files SECRETS_DIR [SECRET_NAME...] < archive.tar
set -eu
umask 077
secrets_dir=${1:?usage: install-files SECRETS_DIR [NAME...]}
shift
mkdir -p /var/lib/cocalc-hosts
stage=$(mktemp -d /var/lib/cocalc-hosts/.stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
tar -x -m -C "$stage" --no-same-owner -f - || {
	echo "ERROR: unpacking the bootstrap files failed (see above); free some space on /var/lib and retry"
	exit 1
}
cd "$stage"
find . -type f | while read -r f; do
	dst=${f#.}
	mkdir -p "$(dirname "$dst")"
	cp -p "$f" "$dst.new.$$"
	chown root:root "$dst.new.$$"
	mv -f "$dst.new.$$" "$dst"
done
if [ -d "$secrets_dir" ]; then
	for f in "$secrets_dir"/*; do
		[ -f "$f" ] || continue
		name=$(basename "$f")
		keep=0
		for n in "$@"; do
			[ "$n" = "$name" ] && keep=1
		done
		if [ "$keep" = 0 ]; then
			rm -f "$f"
			echo "removed secret $name (no longer configured)"
		fi
	done
fi
