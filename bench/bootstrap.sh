#!/bin/sh
# Seconds from "SSH answers" to "agent answers" when bootstrapping a fresh
# test VM (network namespace + OpenSSH in a Debian chroot) whose packages
# are already present, with a real cocalc-hosts build as the agent.
# Needs root. Usage: bench/bootstrap.sh [ITERATIONS]
set -eu
cd "$(dirname "$0")/.."
n=${1:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/cocalc-hosts" ./cmd/cocalc-hosts
go test ./pkg/sshboot -run '^$' -bench BootstrapFresh -benchtime "${n}x" -count 1 -args -agent-binary="$tmp/cocalc-hosts"
