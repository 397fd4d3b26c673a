#!/bin/sh
# supervise: keeps the cocalc-hosts agent running on machines without
# systemd (containers, chroots, some HPC nodes). agentctl starts it in its
# own session; it restarts the agent when it dies and, on TERM, stops the
# agent and exits. Only the agent is signalled: project containers run
# under conmon, outside this process tree's signals, and keep running.
#
# Installed as /usr/local/lib/cocalc-hosts/supervise.

AGENT_BIN=/usr/local/bin/cocalc-hosts
AGENT_CONFIG=/etc/cocalc-hosts/agent.json
RUN_DIR=/run/cocalc-hosts
LOG_DIR=/var/log/cocalc-hosts

# Whatever descriptors the starter had open (a lock, a pipe to an SSH
# session) are not ours to keep open.
exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
mkdir -p "$RUN_DIR" "$LOG_DIR"
echo $$ >"$RUN_DIR/supervisor.pid"

stopping=0
child=""
on_term() {
	stopping=1
	[ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap on_term TERM INT HUP

delay=1
while [ "$stopping" = 0 ]; do
	started=$(date +%s)
	# A clean environment: the agent must never inherit anything from
	# whoever ran the bootstrap (the SSH session, sudo).
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		"$AGENT_BIN" agent --config "$AGENT_CONFIG" </dev/null >>"$LOG_DIR/agent.log" 2>&1 &
	child=$!
	echo "$child" >"$RUN_DIR/agent.pid"
	# wait returns early when a trapped signal arrives; wait again until
	# the agent is really gone.
	while kill -0 "$child" 2>/dev/null; do
		wait "$child"
	done
	child=""
	[ "$stopping" = 1 ] && break
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) supervise: agent exited; restarting in ${delay}s" >>"$LOG_DIR/agent.log"
	# In the background so that TERM can interrupt the wait.
	sleep "$delay" &
	wait $!
	# Back off while it keeps dying at once; reset after a good run.
	if [ $(($(date +%s) - started)) -gt 60 ]; then delay=1; elif [ $delay -lt 30 ]; then delay=$((delay * 2)); fi
done
rm -f "$RUN_DIR/agent.pid" "$RUN_DIR/supervisor.pid"
