#!/bin/sh
# Checks that tests (or benchmarks) leave nothing running on this machine.
#
#   scripts/leakcheck.sh snapshot DIR   before the run
#   scripts/leakcheck.sh check DIR      after it: exits 1, naming each leak
#
# A leak is a process started during the run that no longer descends from
# a process that existed before it (it was orphaned: its test is gone), or
# a TCP/UDP socket listening in this machine's network namespace that did
# not listen before. A test must start its daemons in namespaces of its
# own and end them; one that escaped once left an sshd on the host's
# port 22 that kept another test's loop device busy.
#
# It assumes the machine runs nothing else meanwhile (as in CI): a daemon
# another user starts during the run is reported too.
set -eu
cmd=${1:-}
dir=${2:-}
if [ -z "$dir" ] || { [ "$cmd" != snapshot ] && [ "$cmd" != check ]; }; then
	echo "usage: $0 snapshot|check DIR" >&2
	exit 2
fi

# One line per process: PID PPID START ARGS, START being the five fields
# of lstart joined (a PID is reused; PID and start time are not).
processes() {
	ps -e -o pid= -o ppid= -o lstart= -o args= | awk '{
		pid = $1; ppid = $2; start = $3 $4 $5 $6 $7
		$1 = $2 = $3 = $4 = $5 = $6 = $7 = ""; sub(/^ +/, "")
		print pid, ppid, start, $0
	}'
}

listening() {
	ss -Hltun | awk '{ print $1, $5 }' | sort -u
}

# orphans prints each process started during the run (not in DIR's
# snapshot) that no longer descends from one that existed before it.
orphans() {
	processes | awk -v before="$1/processes" '
		BEGIN { while ((getline line < before) > 0) { split(line, f, " "); old[f[1] " " f[3]] = 1 } }
		{
			pid = $1; parent[pid] = $2; key[pid] = $1 " " $3
			line = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", line); args[pid] = line
		}
		END {
			for (pid in parent) {
				# Kernel threads are not started by tests.
				if (pid == 1 || pid == 2 || parent[pid] == 2 || old[key[pid]]) continue
				orphan = 1
				for (p = parent[pid]; p != 0 && p != 1; p = parent[p]) {
					if (!(p in parent)) break
					if (old[key[p]]) { orphan = 0; break }
				}
				if (orphan) print "  process " pid ": " args[pid]
			}
		}'
}

case $cmd in
snapshot)
	mkdir -p "$dir"
	processes >"$dir/processes"
	listening >"$dir/listening"
	;;
check)
	# A process that is still ending when the last test returns is not a
	# leak: podman's conmon finishes a removed container's clean-up (and
	# is reaped by PID 1) a moment after "podman rm" returns. Only what
	# is still there after a grace period is reported.
	leaks=$(orphans "$dir")
	waited=0
	while [ -n "$leaks" ] && [ "$waited" -lt 30 ]; do
		sleep 1
		waited=$((waited + 1))
		leaks=$(orphans "$dir")
	done
	ports=$(listening | comm -13 "$dir/listening" - | sed 's/^/  listening: /')
	if [ -n "$leaks$ports" ]; then
		echo "the run left these behind (a test or benchmark must end what it starts, in namespaces of its own):" >&2
		[ -z "$leaks" ] || echo "$leaks" >&2
		[ -z "$ports" ] || echo "$ports" >&2
		exit 1
	fi
	;;
esac
