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
cat <<'EOF'
Next, a project on it (the image is made from Debian packages, about a minute):
  ./bin/cocalc-hosts image build cocalc-base --host demo
  ./bin/cocalc-hosts project create --host demo --title first --start
  ./bin/cocalc-hosts project exec first -- sh -c 'echo hello from $(hostname)'
The host itself:
  ./bin/cocalc-hosts stop demo; ./bin/cocalc-hosts start demo
  ./bin/cocalc-hosts dashboard
When done: ./bin/cocalc-hosts project delete first --purge --yes; ./bin/cocalc-hosts delete demo --yes
EOF
