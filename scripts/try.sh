#!/bin/sh
# Builds cocalc-hosts and runs it on its embedded defaults: an SQLite state
# database in the XDG state dir and a real local host on this machine.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
PATH="$PATH:/usr/local/go/bin"
export PATH
mkdir -p bin
go build -o bin/cocalc-hosts ./cmd/cocalc-hosts
./bin/cocalc-hosts providers
./bin/cocalc-hosts show demo >/dev/null 2>&1 || ./bin/cocalc-hosts create --cloud local --name demo
./bin/cocalc-hosts list
./bin/cocalc-hosts show demo
echo
echo "Next: ./bin/cocalc-hosts stop demo; ./bin/cocalc-hosts start demo; ./bin/cocalc-hosts delete demo --yes"
