#!/bin/sh
# agentctl: start, stop and remove the cocalc-hosts agent on this machine.
#
# Installed as /usr/local/lib/cocalc-hosts/agentctl by the bootstrap. The
# control plane also runs this script directly (sh -c) for stop, start and
# uninstall, so it must work on a machine where nothing is installed yet,
# and it must not depend on any other file. Runs as root.
#
# Usage: agentctl start|stop|restart|ensure|status|uninstall [--purge]
set -eu

AGENT_BIN=/usr/local/bin/cocalc-hosts
CONF_DIR=/etc/cocalc-hosts
AGENT_CONFIG=$CONF_DIR/agent.json
LIB_DIR=/usr/local/lib/cocalc-hosts
STATE_DIR=/var/lib/cocalc-hosts
RUN_DIR=/run/cocalc-hosts
LOG_DIR=/var/log/cocalc-hosts
UNIT=cocalc-hosts-agent.service
UNIT_FILE=/etc/systemd/system/$UNIT
SUPERVISOR_PID=$RUN_DIR/supervisor.pid
AGENT_PID=$RUN_DIR/agent.pid
POOL=/btrfs
STORAGE_CONF=/etc/containers/storage.conf

say() { echo "agentctl: $*"; }
fail() {
	echo "ERROR: $*"
	exit 1
}

has_systemd() { [ -d /run/systemd/system ]; }
installed() { [ -x "$AGENT_BIN" ] && [ -f "$AGENT_CONFIG" ]; }

# pid_of FILE PATTERN: the pid in FILE if that process is alive and its
# command line contains PATTERN (so a reused pid is not mistaken for ours).
pid_of() {
	p=$(cat "$1" 2>/dev/null || true)
	case "$p" in '' | *[!0-9]*) return 1 ;; esac
	[ -r "/proc/$p/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$2" || return 1
	echo "$p"
}

agent_pid() {
	if has_systemd && [ -f "$UNIT_FILE" ]; then
		p=$(systemctl show -p MainPID --value "$UNIT" 2>/dev/null || echo 0)
		[ "${p:-0}" != 0 ] && echo "$p" && return 0
		return 1
	fi
	pid_of "$AGENT_PID" "agent --config $AGENT_CONFIG"
}

running() { agent_pid >/dev/null; }

start() {
	installed || fail "the agent is not installed on this machine (no $AGENT_BIN or $AGENT_CONFIG); run the bootstrap first (cocalc-hosts start HOST)"
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	chmod 700 "$RUN_DIR" "$LOG_DIR"
	if has_systemd && [ -f "$UNIT_FILE" ]; then
		systemctl daemon-reload
		systemctl enable --quiet "$UNIT"
		systemctl start "$UNIT"
		say "agent started by systemd ($UNIT)"
		return 0
	fi
	if pid_of "$SUPERVISOR_PID" "$LIB_DIR/supervise" >/dev/null; then
		say "agent supervisor already running"
		return 0
	fi
	# A new session, no terminal and no inherited output: the supervisor
	# outlives this SSH session and keeps the agent running.
	setsid -f /bin/sh "$LIB_DIR/supervise" </dev/null >>"$LOG_DIR/supervisor.log" 2>&1
	i=0
	while [ $i -lt 50 ]; do
		pid_of "$SUPERVISOR_PID" "$LIB_DIR/supervise" >/dev/null && {
			say "agent started by its supervisor (no systemd on this machine)"
			return 0
		}
		sleep 0.1
		i=$((i + 1))
	done
	fail "the agent supervisor did not start; see $LOG_DIR/supervisor.log"
}

stop() {
	if has_systemd && [ -f "$UNIT_FILE" ]; then
		# KillMode=process in the unit: only the agent is stopped, never
		# the project containers it started.
		systemctl stop "$UNIT" || true
		say "agent stopped"
		return 0
	fi
	sp=$(pid_of "$SUPERVISOR_PID" "$LIB_DIR/supervise" || true)
	ap=$(pid_of "$AGENT_PID" "agent --config $AGENT_CONFIG" || true)
	if [ -z "$sp" ] && [ -z "$ap" ]; then
		say "agent is not running"
		return 0
	fi
	# The supervisor passes TERM on to the agent and exits when it has.
	if [ -n "$sp" ]; then
		kill -TERM "$sp" 2>/dev/null || true
	elif [ -n "$ap" ]; then
		kill -TERM "$ap" 2>/dev/null || true
	fi
	i=0
	while [ $i -lt 150 ]; do
		if ! pid_of "$SUPERVISOR_PID" "$LIB_DIR/supervise" >/dev/null && ! pid_of "$AGENT_PID" "agent --config" >/dev/null; then
			rm -f "$SUPERVISOR_PID" "$AGENT_PID"
			say "agent stopped"
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	# Still there after 15 s: only the agent and its supervisor are killed.
	for p in $sp $ap; do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -f "$SUPERVISOR_PID" "$AGENT_PID"
	say "agent killed after it did not stop within 15 s"
}

# ensure starts the agent if it is not running, and restarts it if its
# binary was replaced since it started (an upgrade, or a bootstrap by a
# newer cocalc-hosts).
ensure() {
	if ! p=$(agent_pid); then
		start
		return 0
	fi
	exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
	case "$exe" in
	*" (deleted)")
		say "agent binary was replaced; restarting the agent"
		stop
		start
		;;
	*) say "agent already running (pid $p)" ;;
	esac
}

status() {
	if p=$(agent_pid); then
		echo "running pid=$p"
		return 0
	fi
	echo "stopped"
	return 3
}

uninstall() {
	purge=${1:-}
	stop
	if has_systemd && [ -f "$UNIT_FILE" ]; then
		systemctl disable --quiet "$UNIT" 2>/dev/null || true
		rm -f "$UNIT_FILE"
		systemctl daemon-reload
	fi
	rm -rf "$LIB_DIR" "$CONF_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/bootstrap" "$STATE_DIR/bootstrap.done"
	rm -f "$AGENT_BIN" "$AGENT_BIN".upload.*
	if [ "$purge" != "--purge" ]; then
		if mountpoint -q "$POOL" 2>/dev/null; then
			say "agent removed; the project pool stays mounted at $POOL with its data"
		else
			say "agent removed"
		fi
		return 0
	fi
	purge_pool
	say "agent and project pool removed"
}

# purge_pool unmounts the pool and erases it: the loop file is deleted,
# a data disk is wiped. Only with an explicit --purge.
purge_pool() {
	src=""
	[ -f "$STATE_DIR/pool-source" ] && src=$(cat "$STATE_DIR/pool-source")
	if mountpoint -q "$POOL" 2>/dev/null; then
		umount "$POOL" 2>/dev/null || fail "cannot unmount $POOL: it is busy; stop what uses it (containers: podman ps; processes: fuser -vm $POOL) and retry"
	fi
	if awk -v pool="$POOL" '$1 !~ /^#/ && $2 == pool { found = 1 } END { exit !found }' /etc/fstab 2>/dev/null; then
		tmp=$(mktemp /etc/fstab.cocalc-hosts.XXXXXX)
		awk -v pool="$POOL" '$1 ~ /^#/ || $2 != pool' /etc/fstab >"$tmp"
		chmod 644 "$tmp"
		mv -f "$tmp" /etc/fstab
	fi
	case "$src" in
	loop:*) rm -f "${src#loop:}" ;;
	/dev/*) [ -b "$src" ] && wipefs -a -q "$src" ;;
	esac
	if [ -f "$STORAGE_CONF.before-cocalc-hosts" ]; then
		mv -f "$STORAGE_CONF.before-cocalc-hosts" "$STORAGE_CONF"
	elif grep -q "cocalc-hosts" "$STORAGE_CONF" 2>/dev/null; then
		rm -f "$STORAGE_CONF"
	fi
	rm -rf "$STATE_DIR"
	rmdir "$POOL" 2>/dev/null || true
}

cmd=${1:-}
case "$cmd" in
start) start ;;
start-if-installed)
	if installed; then start; else say "agent is not installed yet; the bootstrap will install it"; fi
	;;
stop) stop ;;
restart)
	stop
	start
	;;
ensure) ensure ;;
status) status ;;
uninstall) uninstall "${2:-}" ;;
*) fail "usage: agentctl start|start-if-installed|stop|restart|ensure|status|uninstall [--purge]" ;;
esac
