#!/bin/sh
# `cocalc-hosts project start` end to end (CLI process, state database,
# durable queue, agent, podman) next to a raw `podman run -d` of the same
# image with the same limits in the same podman store, N times each.
# Needs root, podman and btrfs (scripts/install-deps.sh); the image's root
# filesystem comes from the test cache (/var/cache/cocalc-hosts-test) or is
# built once with mmdebstrap.
#   ./bench/project_start.sh [N]
set -eu
N=${1:-10}
cd "$(dirname "$0")/.."
W=$(mktemp -d /tmp/cocalc-bench-XXXXXX)
BIN=$W/cocalc-hosts
go build -o "$BIN" ./cmd/cocalc-hosts
export HOME=$W XDG_CONFIG_HOME=$W/config XDG_STATE_HOME=$W/state
mkdir -p "$W/config/cocalc-hosts"
cat > "$W/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
cat > "$W/config/cocalc-hosts/config.yaml" <<CONF
providers:
  local:
    containers_conf: $W/containers.conf
    podman_store: $W/podman
    image_cache_dir: /var/cache/cocalc-hosts-test
    snapshot_interval: "0"
CONF
RR=
P=
# Benchmarks clean up like tests: the project goes first (a host that
# still holds projects refuses to be deleted), then the host and its
# agent; an agent the delete could not end is killed, and the run fails.
cleanup() {
	status=$?
	[ -z "$P" ] || "$BIN" project delete "$P" --purge --yes >/dev/null 2>&1 || true
	if ! "$BIN" delete bench --yes >/dev/null 2>&1; then
		echo "project_start.sh: deleting its host failed; killing its agent" >&2
		for f in "$W"/state/cocalc-hosts/providers/local/local-hosts/*/agent.pid; do
			[ -f "$f" ] && kill -9 "$(cut -d' ' -f1 "$f")" 2>/dev/null
		done
		status=1
	fi
	if [ -n "$RR" ]; then
		CONTAINERS_CONF=$W/containers.conf podman --root "$W/podman/root" --runroot "$RR" --tmpdir "$W/podman/tmp" rm -af -t 0 >/dev/null 2>&1 || true
		CONTAINERS_CONF=$W/containers.conf podman --root "$W/podman/root" --runroot "$RR" --tmpdir "$W/podman/tmp" rmi -af >/dev/null 2>&1 || true
	fi
	for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m"; done
	rm -rf "$W"
	[ -z "$RR" ] || rm -rf "$RR"
	exit $status
}
trap cleanup EXIT
ms() { date +%s%N | cut -c1-13; }

"$BIN" create --cloud local --name bench >/dev/null 2>&1
"$BIN" image build cocalc-base --host bench >/dev/null 2>&1
P=$("$BIN" project create --host bench --memory 256M --cpus 1 --disk 256M -o json 2>/dev/null |
	sed -n 's/^    "id": "\(.*\)",$/\1/p' | head -1)
RR=$(sed -n 's/.*"runroot": "\(.*\)".*/\1/p' "$W"/state/cocalc-hosts/providers/local/local-hosts/*/agent.json)
PODMAN="podman --root $W/podman/root --runroot $RR --tmpdir $W/podman/tmp"
export CONTAINERS_CONF=$W/containers.conf

total=0
for i in $(seq "$N"); do
	t0=$(ms); "$BIN" project start "$P" >/dev/null 2>&1; t1=$(ms)
	total=$((total + t1 - t0))
	"$BIN" project stop "$P" >/dev/null 2>&1
done
echo "cocalc-hosts project start: $((total / N)) ms (mean of $N)"

total=0
for i in $(seq "$N"); do
	t0=$(ms)
	$PODMAN run -d --name bench-raw --memory 256m --memory-swap 256m --cpus 1 --pids-limit 1024 \
		--user 1000:1000 cocalc-base sleep infinity >/dev/null
	t1=$(ms)
	total=$((total + t1 - t0))
	$PODMAN rm -f -t 0 bench-raw >/dev/null
done
echo "podman run -d:              $((total / N)) ms (mean of $N)"
