#!/bin/sh
# Moving a project between two local hosts (two btrfs loop pools on this
# machine) next to raw `btrfs send | btrfs receive` of the same data
# between the same pools: MB/s of the tree straight from agent to agent
# (direct) and through the control plane (relayed), and the downtime of a
# move of the running project with data written during its pre-copy
# (stopped on the source to running on the destination, the move's own
# figure). Root: real btrfs and podman.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
need_root "btrfs loop pools, podman"
# The short run (CI's) leaves this figure out: it makes two real hosts
# and images, minutes of CI, and the moves it times are the ones the
# tests run (project_move.txtar, TestMoveKilledAtEachPhase).
[ -z "${SHORT:-}" ] || skip "not in --short: it makes two real hosts; run bench/run.sh"
mb=1024 changed=50
out=$(MOVE_BENCH_MB=$mb MOVE_BENCH_CHANGED_MB=$changed go test ./cmd/cocalc-hosts -run '^$' -bench 'Move$' -benchtime 1x 2>&1) || true
m() { echo "$out" | metric BenchmarkMove "$1"; }
raw=$(m raw_MB/s)
if [ "$raw" = null ]; then
	echo "$out" >&2
	exit 1
fi
direct=$(m direct_MB/s)
# What the downtime is made of: the running move's cut-over steps (ms).
steps=$(echo "$out" | sed -n 's/.*cutover_steps //p' | tail -n 1)
synced=$(m raw_synced_MB/s)
printf '{"tree_mib": %s, "changed_during_precopy_mib": %s, "raw_send_receive_mb_s": %s, "raw_send_receive_synced_mb_s": %s, "move_direct_mb_s": %s, "move_relayed_mb_s": %s, "direct_vs_raw": %s, "direct_vs_raw_synced": %s, "downtime_ms": %s, "cutover_steps": %s}\n' \
	"$mb" "$changed" "$raw" "$synced" "$direct" "$(m relayed_MB/s)" "$(echo "$direct $raw" | awk '{ printf "%.2f", $1 / $2 }')" "$(echo "$direct $synced" | awk '{ printf "%.2f", $1 / $2 }')" "$(m downtime_ms)" "${steps:-null}"
