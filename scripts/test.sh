#!/bin/sh
# Runs every test of cocalc-hosts: unit tests, store and provider contract
# suites on SQLite and a throwaway Postgres, real btrfs/podman/OpenSSH
# tests (as root), and the testscript end-to-end scripts.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
PATH="$PATH:/usr/local/go/bin"
export PATH
# Whatever the tests leave running or listening fails the run (see
# scripts/leakcheck.sh); the snapshot is taken after the setup above.
leakdir=$(mktemp -d)
trap 'rm -rf "$leakdir"' EXIT
./scripts/leakcheck.sh snapshot "$leakdir"
# The checks below run after a failure too (a failed test is the likeliest
# to leave something behind); the script exits 1 if any failed.
status=0
# Sized for 2 cores. The end-to-end package (testscripts, SSH test VMs,
# moves) takes longest and keeps both cores' worth of tests busy by
# itself (its tests run in parallel); the fuzz targets, and every other
# package then the release build and benchmarks one at a time, run
# alongside it.
e2e=cmd/cocalc-hosts
# Its timeout is the CI's own limit: testscript stops a script that runs
# into it, and its scripts start late, after the longest tests.
go test -count=1 -timeout 29m "./$e2e" >"$leakdir/e2e.log" 2>&1 &
e2e_pid=$!
# Every fuzz target for a few thousand runs (bench/fuzz.sh runs them
# longer), also alongside: most of its time is compiling instrumented
# test binaries, which fills the cores while the tests wait on disks,
# podman and SSH.
./bench/fuzz.sh 2000x >"$leakdir/fuzz.log" 2>&1 &
fuzz_pid=$!
# The static checks run while the end-to-end tests start (they take the
# longest; nothing waits on these), and fail the run like a test.
go vet ./... || status=1
unformatted=$(gofmt -l cmd pkg providers)
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	status=1
fi
# shellcheck disable=SC2046 # one argument per package
go test -count=1 -p 1 -timeout 25m $(go list ./... | grep -v "/$e2e\$") || status=1
# Release targets (goreleaser.yaml) must keep building: the CLI runs on
# macOS too, even though hosts and agents are Linux.
GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go build -o /dev/null ./cmd/cocalc-hosts || status=1
# The benchmark report at a tiny size: only checks that every figure runs
# and the report is valid JSON (bench/run.sh --short exits 1 otherwise).
./bench/run.sh --short >/dev/null || status=1
wait "$fuzz_pid" || status=1
cat "$leakdir/fuzz.log"
wait "$e2e_pid" || status=1
cat "$leakdir/e2e.log"
./scripts/leakcheck.sh check "$leakdir" || status=1
exit $status
