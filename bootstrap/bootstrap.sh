#!/bin/sh
# bootstrap: turns this machine into a cocalc-hosts project host.
#
# The control plane runs it as root over SSH after uploading the agent
# binary (/usr/local/bin/cocalc-hosts), the agent's config and secrets
# (root-only files in /etc/cocalc-hosts), these scripts
# (/var/lib/cocalc-hosts/bootstrap) and the settings below
# (/etc/cocalc-hosts/bootstrap.conf).
#
# Idempotent: every step looks before it changes anything, so a run that
# died half-way completes when run again. A finished run leaves a marker
# holding BOOTSTRAP_ID; a later run with the same settings only makes sure
# the pool is mounted and the agent runs. Lines starting with "==>" name
# steps; a failure is an "ERROR: ..." line saying what to do.
set -eu
umask 022

CONF=/etc/cocalc-hosts/bootstrap.conf
SRC_DIR=/var/lib/cocalc-hosts/bootstrap
STATE_DIR=/var/lib/cocalc-hosts
LIB_DIR=/usr/local/lib/cocalc-hosts
RUN_DIR=/run/cocalc-hosts
LOG_DIR=/var/log/cocalc-hosts
AGENT_SOCKET=$RUN_DIR/agent.sock
POOL=/btrfs
LOOP_FILE=$STATE_DIR/btrfs.img
MARKER=$STATE_DIR/bootstrap.done
STORAGE_CONF=/etc/containers/storage.conf
UNIT_FILE=/etc/systemd/system/cocalc-hosts-agent.service
# btrfs cannot reclaim metadata chunks on tiny filesystems.
MIN_POOL_GB=4
# Free space needed to make a loop-file pool (it is sparse: it grows as
# projects write).
MIN_FREE_MB=2048

step() { echo "==> $*"; }
# agentctl may start the agent's supervisor, which must not inherit the
# bootstrap's lock (fd 9): it would hold it for as long as it runs.
agentctl() { "$LIB_DIR/agentctl" "$@" 9>&-; }
fail() {
	echo "ERROR: $*"
	exit 1
}

[ -r "$CONF" ] || fail "missing $CONF; this script is run by cocalc-hosts, which uploads it first"
# shellcheck source=/dev/null
. "$CONF"
HOST_ID=${HOST_ID:?HOST_ID missing in $CONF}
BOOTSTRAP_ID=${BOOTSTRAP_ID:?BOOTSTRAP_ID missing in $CONF}
DATA_DISK=${DATA_DISK:-}
DATA_DISK_WAIT=${DATA_DISK_WAIT:-60}
POOL_SIZE_GB=${POOL_SIZE_GB:-0}
GPU=${GPU:-auto}

# ---- packages

install_packages() {
	need=""
	command -v podman >/dev/null 2>&1 || need="$need podman"
	command -v btrfs >/dev/null 2>&1 || need="$need btrfs-progs"
	command -v restic >/dev/null 2>&1 || need="$need restic"
	if [ -z "$need" ]; then
		echo "podman, btrfs-progs and restic are present"
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 || fail "missing:$need, and there is no apt-get to install them; install them by hand and retry"
	echo "installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	# cloud-init may still be running apt on a fresh VM: wait for its lock.
	# --error-on=any: without it, an update that reached no mirror succeeds.
	apt-get -q -o DPkg::Lock::Timeout=300 --error-on=any update ||
		fail "apt-get update failed (see above); fix the machine's network or package sources, or install$need by hand, then retry"
	# shellcheck disable=SC2086 # one word per package
	apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends $need ||
		fail "could not install$need with apt-get (see above); install them by hand and retry"
	for cmd in podman btrfs restic; do
		command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is still missing after installing$need; install it by hand and retry"
	done
}

# ---- GPU

gpu_present() {
	[ -e /dev/nvidia0 ] && return 0
	command -v lspci >/dev/null 2>&1 && lspci 2>/dev/null | grep -qi nvidia
}

setup_gpu() {
	case "$GPU" in
	no) return 0 ;;
	auto)
		if ! gpu_present; then
			echo "no NVIDIA GPU; nothing to do"
			return 0
		fi
		;;
	esac
	gpu_present || fail "this host should have an NVIDIA GPU, but none is visible (no /dev/nvidia0, none in lspci); check the machine type"
	command -v nvidia-smi >/dev/null 2>&1 || fail "an NVIDIA GPU is present but its driver is not (no nvidia-smi); use an image with the NVIDIA driver, or install it, and retry"
	if ! command -v nvidia-ctk >/dev/null 2>&1; then
		echo "installing nvidia-container-toolkit from NVIDIA's repository"
		export DEBIAN_FRONTEND=noninteractive
		apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends curl gpg ca-certificates ||
			fail "could not install curl and gpg to add NVIDIA's repository"
		keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
		curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o "$keyring" ||
			fail "could not fetch NVIDIA's repository key"
		curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
			sed "s#deb https://#deb [signed-by=$keyring] https://#g" >/etc/apt/sources.list.d/nvidia-container-toolkit.list ||
			fail "could not fetch NVIDIA's repository list"
		apt-get -q -o DPkg::Lock::Timeout=300 update || fail "apt-get update failed after adding NVIDIA's repository"
		apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends nvidia-container-toolkit ||
			fail "could not install nvidia-container-toolkit"
	fi
	mkdir -p /etc/cdi
	nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml || fail "nvidia-ctk could not write the CDI spec"
	echo "GPU ready: CDI spec in /etc/cdi/nvidia.yaml"
}

# ---- the pool: a data disk or a loop file, btrfs, mounted at /btrfs

# fstab_entry SOURCE OPTIONS adds the pool's line, by UUID or file, with
# nofail so that a missing disk never stops the machine from booting.
fstab_entry() {
	have=$(awk -v pool="$POOL" '$1 !~ /^#/ && $2 == pool { print $1; exit }' /etc/fstab 2>/dev/null || true)
	if [ "$have" = "$1" ]; then
		return 0
	fi
	[ -z "$have" ] || fail "/etc/fstab already mounts $have at $POOL; remove that line (or unmount and wipe it if its data is not needed) and retry"
	printf '%s %s btrfs %s 0 0\n' "$1" "$POOL" "$2" >>/etc/fstab
	echo "added $POOL to /etc/fstab ($1)"
}

wait_for_device() {
	i=0
	while [ ! -e "$DATA_DISK" ] && [ "$i" -lt "$DATA_DISK_WAIT" ]; do
		[ "$i" = 0 ] && echo "waiting up to ${DATA_DISK_WAIT}s for data disk $DATA_DISK to appear"
		sleep 1
		i=$((i + 1))
	done
	[ -e "$DATA_DISK" ] || fail "data disk $DATA_DISK does not exist on this machine; check the device name (lsblk lists disks) and retry"
	dev=$(readlink -f "$DATA_DISK")
	[ -b "$dev" ] || fail "data disk $DATA_DISK ($dev) is not a block device; give a disk such as /dev/vdb"
}

use_data_disk() {
	wait_for_device
	where=$(awk -v dev="$dev" '$1 == dev && $2 != pool { print $2; exit }' pool="$POOL" /proc/mounts)
	[ -z "$where" ] || fail "data disk $DATA_DISK is in use: mounted at $where; unmount it or give another disk, and retry"
	pt=$(blkid -p -o value -s PTTYPE "$dev" 2>/dev/null || true)
	[ -z "$pt" ] || fail "data disk $DATA_DISK holds a partition table ($pt); refusing to format it. Give an empty disk or a partition, or, if nothing on it is needed, wipe it (wipefs -a $dev) and retry"
	fs=$(blkid -p -o value -s TYPE "$dev" 2>/dev/null || true)
	case "$fs" in
	"")
		echo "formatting $DATA_DISK ($dev) as btrfs"
		# (Its notes about changed defaults go to stdout; errors to stderr.)
		mkfs.btrfs -q -L cocalc-pool "$dev" >/dev/null || fail "mkfs.btrfs on $dev failed (see above)"
		;;
	btrfs) echo "data disk $DATA_DISK already holds btrfs; using it as is" ;;
	*) fail "data disk $DATA_DISK holds a filesystem of type $fs; refusing to format it. If nothing on it is needed, wipe it (wipefs -a $dev) and retry, or give another disk with --data-disk" ;;
	esac
	uuid=$(blkid -p -o value -s UUID "$dev")
	[ -n "$uuid" ] || fail "cannot read the UUID of the new filesystem on $dev"
	echo "$dev" >"$STATE_DIR/pool-source"
	fstab_entry "UUID=$uuid" "defaults,nofail,noatime"
}

use_loop_file() {
	if [ -f "$LOOP_FILE" ]; then
		fs=$(blkid -p -o value -s TYPE "$LOOP_FILE" 2>/dev/null || true)
		[ "$fs" = btrfs ] || fail "$LOOP_FILE exists but is not a btrfs image; move it aside and retry"
		echo "using the existing pool image $LOOP_FILE"
	else
		avail_mb=$(df -Pm "$STATE_DIR" | awk 'NR==2 {print $4}')
		[ "$avail_mb" -ge "$MIN_FREE_MB" ] || fail "not enough free space for the project pool: $STATE_DIR has ${avail_mb} MiB free and a pool needs ${MIN_FREE_MB} MiB; free some space or give a data disk with --data-disk, then retry"
		size=$POOL_SIZE_GB
		if [ "$size" -le 0 ]; then
			# Sparse: most of the free space, leaving room for the system.
			size=$((avail_mb * 8 / 10 / 1024))
		fi
		[ "$size" -ge "$MIN_POOL_GB" ] || size=$MIN_POOL_GB
		echo "no data disk: making a ${size} GiB sparse pool image $LOOP_FILE"
		rm -f "$LOOP_FILE.new"
		truncate -s "${size}G" "$LOOP_FILE.new" || fail "cannot create $LOOP_FILE.new (see above)"
		if ! mkfs.btrfs -q -L cocalc-pool "$LOOP_FILE.new" >/dev/null; then
			rm -f "$LOOP_FILE.new"
			fail "mkfs.btrfs on the pool image failed (see above)"
		fi
		mv "$LOOP_FILE.new" "$LOOP_FILE"
	fi
	echo "loop:$LOOP_FILE" >"$STATE_DIR/pool-source"
	fstab_entry "$LOOP_FILE" "loop,nofail,noatime"
}

mount_pool() {
	mkdir -p "$POOL"
	if mountpoint -q "$POOL"; then
		fs=$(findmnt -n -o FSTYPE "$POOL")
		[ "$fs" = btrfs ] || fail "$POOL is mounted but holds $fs, not btrfs; unmount it and retry"
		return 0
	fi
	mount "$POOL" || fail "cannot mount $POOL (see above)"
	echo "mounted $POOL"
}

setup_pool() {
	if mountpoint -q "$POOL"; then
		fs=$(findmnt -n -o FSTYPE "$POOL")
		[ "$fs" = btrfs ] || fail "$POOL is mounted but holds $fs, not btrfs; cocalc-hosts needs btrfs there. Unmount it (and free it) and retry"
		echo "$POOL is mounted and holds btrfs; using it"
	else
		if [ -n "$DATA_DISK" ]; then use_data_disk; else use_loop_file; fi
		mount_pool
	fi
	if btrfs qgroup show "$POOL" >/dev/null 2>&1; then
		echo "btrfs quotas are enabled"
	else
		btrfs quota enable "$POOL" || fail "cannot enable btrfs quotas on $POOL (see above)"
		echo "enabled btrfs quotas"
	fi
}

# ---- container storage on the pool

setup_container_storage() {
	mkdir -p /etc/containers "$POOL/containers/storage"
	if [ -f "$STORAGE_CONF" ] && ! grep -q cocalc-hosts "$STORAGE_CONF"; then
		[ -f "$STORAGE_CONF.before-cocalc-hosts" ] || cp -p "$STORAGE_CONF" "$STORAGE_CONF.before-cocalc-hosts"
		echo "kept the previous $STORAGE_CONF as $STORAGE_CONF.before-cocalc-hosts"
	fi
	cat >"$STORAGE_CONF.new" <<CONF
# Written by cocalc-hosts: container images and layers live on the
# project pool. The previous file, if any, is $STORAGE_CONF.before-cocalc-hosts.
[storage]
driver = "overlay"
graphroot = "$POOL/containers/storage"
runroot = "/run/containers/storage"
CONF
	mv "$STORAGE_CONF.new" "$STORAGE_CONF"
	echo "podman storage is $POOL/containers/storage"
}

# ---- the agent service

install_service() {
	mkdir -p "$LIB_DIR" "$LOG_DIR"
	chmod 700 "$LOG_DIR"
	install -m 0755 "$SRC_DIR/agentctl.sh" "$LIB_DIR/agentctl"
	install -m 0755 "$SRC_DIR/supervise.sh" "$LIB_DIR/supervise"
	if [ -d /run/systemd/system ]; then
		cat >"$UNIT_FILE.new" <<UNIT
# Written by cocalc-hosts.
[Unit]
Description=cocalc-hosts project host agent
After=network-online.target local-fs.target
RequiresMountsFor=$POOL

[Service]
ExecStart=/usr/local/bin/cocalc-hosts agent --config /etc/cocalc-hosts/agent.json
Restart=always
RestartSec=2
# Stop and restart only the agent: project containers keep running
# through agent upgrades and restarts.
KillMode=process
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

[Install]
WantedBy=multi-user.target
UNIT
		mv "$UNIT_FILE.new" "$UNIT_FILE"
		systemctl daemon-reload
		systemctl enable --quiet cocalc-hosts-agent.service
		echo "installed systemd unit cocalc-hosts-agent.service"
	else
		echo "no systemd: the agent runs under $LIB_DIR/supervise"
	fi
}

wait_for_agent() {
	i=0
	while [ "$i" -lt 200 ]; do
		if [ -S "$AGENT_SOCKET" ] && agentctl status >/dev/null 2>&1; then
			echo "agent is listening on $AGENT_SOCKET"
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "last lines of $LOG_DIR/agent.log:"
	tail -n 10 "$LOG_DIR/agent.log" 2>/dev/null || true
	fail "the agent did not open $AGENT_SOCKET within 20 s (see its log above)"
}

# ---- main

mkdir -p "$RUN_DIR" "$STATE_DIR"
chmod 700 "$RUN_DIR"
# One bootstrap at a time on a machine.
exec 9>"$RUN_DIR/bootstrap.lock"
flock -w 600 9 || fail "another bootstrap has been running on this machine for 10 minutes; wait for it or kill it, then retry"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$BOOTSTRAP_ID" ]; then
	step "already bootstrapped with these settings: checking the pool and the agent"
	mount_pool
	agentctl ensure
	wait_for_agent
	step "done"
	exit 0
fi

step "packages"
install_packages
step "GPU"
setup_gpu
step "data disk"
setup_pool
step "container storage"
setup_container_storage
step "agent service"
install_service
step "starting the agent"
if agentctl status >/dev/null 2>&1; then
	# The settings changed: the agent reads them when it starts.
	agentctl restart
else
	agentctl start
fi
wait_for_agent
echo "$BOOTSTRAP_ID" >"$MARKER.new"
mv "$MARKER.new" "$MARKER"
step "done"
