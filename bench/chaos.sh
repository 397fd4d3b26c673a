#!/bin/sh
# The kill-anywhere harness (issue 15): real worker and serve processes on a
# throwaway Postgres drive sim hosts (duplicate names, injected faults)
# through create/stop/start/delete while random ones are SIGKILLed;
# prints the counts as JSON and exits 1 when an invariant fails.
#   ./bench/chaos.sh                       100 runs × 200 hosts × 30 kills
#   ./bench/chaos.sh --runs 1 --hosts 20 --kills 5
#   ./bench/chaos.sh --projects 20 --runs 3          project actions on real
#                                                    local hosts (as root)
# Every option: ./bench/chaos.sh --help
set -eu
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/go/bin"
export PATH
exec go run ./bench/chaos "$@"
