#!/bin/sh
# `cocalc-hosts project start` end to end (CLI process, state database,
# durable queue, agent, podman) next to a raw `podman run -d` of the same
# image with the same limits in the same podman store, N times each.
# Needs root, podman and btrfs (scripts/install-deps.sh); the image's root
# filesystem comes from the test cache (/var/cache/cocalc-hosts-test) or is
# built once with mmdebstrap.
#   ./bench/project_start.sh [N]
# With TRACE=DIR, one more start is traced (strace of the CLI and of the
# agent, kept in DIR): when each step began, in ms after the CLI's exec,
# and how long each podman and btrfs command the agent ran took.
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

# Interleaved, so that both see the same machine; the raw container gets
# a project's mounts (home, scratch, snapshots read-only).
mkdir -p "$W/raw"
ta=0 tr=0 la= lr=
for i in $(seq "$N"); do
	t0=$(ms); "$BIN" project start "$P" >/dev/null 2>&1; t1=$(ms)
	ta=$((ta + t1 - t0)) la="$la $((t1 - t0))"
	"$BIN" project stop "$P" >/dev/null 2>&1
	t0=$(ms)
	$PODMAN run -d --name bench-raw --memory 256m --memory-swap 256m --cpus 1 --pids-limit 1024 \
		--mount "type=bind,source=$W/raw,target=/home/user" --mount "type=bind,source=$W/raw,target=/scratch" \
		--mount "type=bind,source=$W/raw,target=/home/user/.snapshots,readonly=true" \
		--user 1000:1000 cocalc-base sleep infinity >/dev/null
	t1=$(ms)
	tr=$((tr + t1 - t0)) lr="$lr $((t1 - t0))"
	$PODMAN rm -f -t 0 bench-raw >/dev/null
done
median() { for x; do echo "$x"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "cocalc-hosts project start: $((ta / N)) ms mean, $(median $la) ms median (of $N)"
echo "podman run -d:              $((tr / N)) ms mean, $(median $lr) ms median (of $N)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

[ -n "${TRACE:-}" ] || exit 0
# One traced start: the CLI's process start, its requests to the agent,
# what it says (progress) and its exit; the agent's accepted requests and
# each podman or btrfs command it ran (exec to exit).
AP=$(cut -d' ' -f1 "$W"/state/cocalc-hosts/providers/local/local-hosts/*/agent.pid)
mkdir -p "$TRACE"
strace -f -q -ttt -s 256 -e trace=execve,accept4 -o "$TRACE/agent.trace" -p "$AP" &
ST=$!
sleep 1
strace -f -q -ttt -s 256 -e trace=execve,openat,connect,fdatasync,fsync,write -o "$TRACE/cli.trace" "$BIN" project start "$P" >/dev/null 2>&1
sleep 0.5
kill "$ST"; wait "$ST" 2>/dev/null || true
"$BIN" project stop "$P" >/dev/null 2>&1
awk '
	FNR == 1 { who = (FILENAME ~ /cli/) ? "cli  " : "agent" }
	{ t = $2 * 1000; pid = $1 }
	who == "cli  " && t0 == "" && /execve\(/ { t0 = t; main = pid }
	/execve\(/ && match($0, /execve\("[^"]*(podman|btrfs)"/) { args[pid] = $0; sub(/.*\[/, "", args[pid]); sub(/\].*/, "", args[pid]); sub(/.*"--tmpdir", "[^"]*", /, "podman ", args[pid]); gsub(/", "/, " ", args[pid]); gsub(/"/, "", args[pid]); st[pid] = t }
	/\+\+\+ exited/ && (pid in st) { printf "%s %8.1f ms  %7.1f ms long: %s\n", who, st[pid] - t0, t - st[pid], substr(args[pid], 1, 100); delete st[pid] }
	/\+\+\+ exited/ && who == "cli  " && pid == main { end = t }
	/write\(2, "/ && match($0, /write\(2, "[^"]*/) { printf "%s %8.1f ms  says: %s\n", who, t - t0, substr($0, RSTART + 10, 70) }
	/openat\(.*config\.yaml"/ { printf "%s %8.1f ms  reads its config (process start-up and package init before)\n", who, t - t0 }
	/fdatasync|fsync/ { printf "%s %8.1f ms  database commit (fsync)\n", who, t - t0 }
	/write\([0-9]+, "(GET|POST) / && match($0, /"(GET|POST) [^ ]*/) { printf "%s %8.1f ms  asks the agent: %s\n", who, t - t0, substr($0, RSTART + 1, RLENGTH - 1) }
	/accept4\(/ && !/EAGAIN/ && !/resumed/ { printf "%s %8.1f ms  request accepted\n", who, t - t0 }
	END { printf "cli   %8.1f ms  exited\n", end - t0 }
' "$TRACE/cli.trace" "$TRACE/agent.trace" | sort -k2 -n
