#!/bin/sh
# The CLI's start-up (issue 14; goal <= 30 ms): median ms of `--version`,
# `--help` and `list` on an empty SQLite database (fresh XDG directories),
# the peak RSS, the binary's size and what `--version` spends initialising
# packages (GODEBUG=inittrace=1: total, count, costliest), for the binary
# built as a release builds it (CGO_ENABLED=0 -trimpath -s -w). --short
# builds with the test runs' settings (a link from the build cache, not a
# recompile of every package) and times 5 runs of each command, not 20.
set -eu
cd "$(dirname "$0")/../.."
if [ -n "${SHORT:-}" ]; then n=5; release=false; else n=20; release=true; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if $release; then
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/cocalc-hosts" ./cmd/cocalc-hosts
else
	go build -ldflags '-s -w' -o "$tmp/cocalc-hosts" ./cmd/cocalc-hosts
fi
go build -o "$tmp/startup" ./bench/startup
"$tmp/startup" -bin "$tmp/cocalc-hosts" -n "$n" |
	jq -c --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson release "$release" '{goal_ms: 30, release_build: $release, load_average: $load} + .'
