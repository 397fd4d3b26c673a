#!/bin/sh
# Backing up and restoring a project's home through the agent next to raw
# `restic backup` / `restic restore` of the same tree on the same btrfs pool
# (root: real btrfs; restic from Debian). MB/s of the tree's size.
set -eu
cd "$(dirname "$0")/../.."
. bench/figures/lib.sh
need_root "btrfs loop pools"
command -v restic >/dev/null 2>&1 || skip "restic is not installed (scripts/install-deps.sh)"
if [ -n "${SHORT:-}" ]; then mb=8; n=1x; else mb=200; n=3x; fi
out=$(BACKUP_BENCH_MB=$mb gobench ./pkg/agent 'Backup$' "$n")
mbps() {
	v=$(echo "$out" | ms "$1")
	if [ "$v" = null ]; then
		echo null
	else
		echo "$mb $v" | awk '{ printf "%.1f", $1 * 1048576 / 1e6 / ($2 / 1000) }'
	fi
}
printf '{"tree_mib": %s, "backup_agent_mb_s": %s, "backup_restic_mb_s": %s, "restore_agent_mb_s": %s, "restore_restic_mb_s": %s}\n' \
	"$mb" "$(mbps BenchmarkBackup/backup/agent)" "$(mbps BenchmarkBackup/backup/restic)" \
	"$(mbps BenchmarkBackup/restore/agent)" "$(mbps BenchmarkBackup/restore/restic)"
