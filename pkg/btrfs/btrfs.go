// Package btrfs wraps the btrfs, mount and losetup command lines for the
// storage pools of project hosts: a btrfs filesystem on a sparse loop file
// (the local provider, tests) or later on a real disk.
//
// The commands are used rather than ioctls because they are what an
// operator would type to inspect or repair a pool, and their error messages
// (which every error here carries) are the ones such a person can search.
package btrfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/runcmd"
)

// SuperMagic is the statfs f_type of a btrfs filesystem.
const SuperMagic = 0x9123683E

// Available reports whether this process can make and mount btrfs loop
// pools: it runs as root, the btrfs tools and losetup are installed, and the
// kernel knows btrfs.
func Available() bool {
	if os.Geteuid() != 0 {
		return false
	}
	for _, cmd := range []string{"mkfs.btrfs", "btrfs", "losetup", "mount", "umount"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return false
		}
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == "btrfs" {
			return true
		}
	}
	return false
}

// CreateLoopPool makes a btrfs filesystem in a sparse file of sizeBytes at
// imagePath, mounts it at mountPoint and enables quotas.
//
// It is safe to call again after a failure or on a finished pool: an
// existing image is kept (and not formatted again if it already holds
// btrfs), and an existing mount is reused, so a half-made pool is
// completed instead of replaced.
func CreateLoopPool(ctx context.Context, imagePath, mountPoint string, sizeBytes int64) error {
	if sizeBytes <= 0 {
		return fmt.Errorf("create loop pool %s: size must be positive, got %d", imagePath, sizeBytes)
	}
	if err := ensureImage(imagePath, sizeBytes); err != nil {
		return fmt.Errorf("create loop pool: %w", err)
	}
	has, err := HasFilesystem(imagePath)
	if err != nil {
		return fmt.Errorf("create loop pool: %w", err)
	}
	if !has {
		if _, err := runcmd.Output(ctx, "mkfs.btrfs", "-q", imagePath); err != nil {
			return fmt.Errorf("create loop pool: %w", err)
		}
	}
	if err := Mount(ctx, imagePath, mountPoint); err != nil {
		return fmt.Errorf("create loop pool: %w", err)
	}
	if err := EnableQuota(ctx, mountPoint); err != nil {
		return fmt.Errorf("create loop pool: %w", err)
	}
	return nil
}

// ensureImage creates a sparse file of size bytes unless path exists.
func ensureImage(path string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	// Write to a temporary name first so that a crash never leaves a
	// short image under the real name.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("truncate image %s to %d bytes: %w", tmp, size, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image %s: %w", path, err)
	}
	return nil
}

// HasFilesystem reports whether the file or device at path starts with a
// btrfs superblock. It reads the magic directly so that it needs neither
// blkid nor root.
func HasFilesystem(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("check btrfs superblock: %w", err)
	}
	defer f.Close()
	// The primary superblock is at 64 KiB; its magic at offset 0x40 in it.
	magic := make([]byte, 8)
	if _, err := f.ReadAt(magic, 0x10000+0x40); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("check btrfs superblock of %s: %w", path, err)
	}
	return string(magic) == "_BHRfS_M", nil
}

// Mount mounts the btrfs image at mountPoint with a loop device, unless it
// is mounted there already.
func Mount(ctx context.Context, imagePath, mountPoint string) error {
	if IsMounted(mountPoint) {
		return nil
	}
	if _, err := os.Stat(imagePath); err != nil {
		return fmt.Errorf("mount pool: %w", err)
	}
	if err := os.MkdirAll(mountPoint, 0o700); err != nil {
		return fmt.Errorf("mount pool: %w", err)
	}
	if _, err := runcmd.Output(ctx, "mount", "-t", "btrfs", "-o", "loop", imagePath, mountPoint); err != nil {
		return fmt.Errorf("mount pool: %w", err)
	}
	return nil
}

// EnableQuota turns on quota groups and waits for their accounting to be
// complete, so that limits set afterwards are enforced from the start.
// Enabling quotas that are already on is harmless.
func EnableQuota(ctx context.Context, mountPoint string) error {
	if _, err := runcmd.Output(ctx, "btrfs", "quota", "enable", mountPoint); err != nil {
		return err
	}
	if _, err := runcmd.Output(ctx, "btrfs", "quota", "rescan", "-w", mountPoint); err != nil {
		return err
	}
	return nil
}

// Unmount unmounts mountPoint and makes sure that no loop device is left
// on its backing file. Unmounting something not mounted succeeds. While
// processes keep the pool busy it waits for them, up to BusyWait; its
// error then names them.
func Unmount(ctx context.Context, mountPoint string) error {
	source, _, ok := mountSource(mountPoint)
	if !ok {
		return nil
	}
	backing := loopBackingFile(source)
	// Pools are never stacked on purpose, but a crash between the check
	// and the mount in Mount could leave two; take them all off.
	for i := 0; i < 8 && IsMounted(mountPoint); i++ {
		if err := umountWhenFree(ctx, mountPoint); err != nil {
			return fmt.Errorf("unmount pool: %w", err)
		}
	}
	if IsMounted(mountPoint) {
		return fmt.Errorf("unmount pool: %s is still mounted", mountPoint)
	}
	if backing != "" {
		if err := DetachLoops(ctx, backing); err != nil {
			return fmt.Errorf("unmount pool: %w", err)
		}
	}
	return nil
}

// BusyWait is how long Unmount waits for the processes that keep a pool
// busy. Those of a host's own making end by themselves: an agent that was
// killed leaves its btrfs commands (a quota rescan, a subvolume sync)
// running, and they hold the pool open until they finish, which under
// load takes seconds.
const BusyWait = 30 * time.Second

// umountWhenFree unmounts mountPoint, waiting while it is busy.
func umountWhenFree(ctx context.Context, mountPoint string) error {
	// busy adds to umount's error the processes that still hold the pool.
	busy := func(err error) error {
		if hs := Holders(mountPoint); len(hs) > 0 {
			return fmt.Errorf("%w; held by %s: end them, then try again", err, strings.Join(hs, ", "))
		}
		return err
	}
	deadline := time.Now().Add(BusyWait)
	interval := 50 * time.Millisecond
	for {
		_, err := runcmd.Output(ctx, "umount", mountPoint)
		if err == nil || !strings.Contains(err.Error(), "target is busy") {
			return err
		}
		if time.Now().After(deadline) {
			return busy(err)
		}
		select {
		case <-ctx.Done():
			return busy(err)
		case <-time.After(interval):
		}
		interval = min(2*interval, 500*time.Millisecond)
	}
}

// Holders describes the processes ("pid 42 (btrfs quota rescan -w /p)")
// whose working directory, root or an open file is at or below
// mountPoint: what keeps it busy. Processes that exit while it looks are
// left out.
func Holders(mountPoint string) []string {
	mp := canonical(mountPoint)
	under := func(link string) bool {
		p, err := os.Readlink(link)
		return err == nil && (p == mp || strings.HasPrefix(p, mp+"/"))
	}
	entries, _ := os.ReadDir("/proc")
	var holders []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name()
		held := under(dir+"/cwd") || under(dir+"/root")
		if !held {
			fds, _ := os.ReadDir(dir + "/fd")
			for _, fd := range fds {
				if held = under(dir + "/fd/" + fd.Name()); held {
					break
				}
			}
		}
		if !held {
			continue
		}
		b, _ := os.ReadFile(dir + "/cmdline")
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if len(cmd) > 120 {
			cmd = cmd[:120] + "…"
		}
		holders = append(holders, fmt.Sprintf("pid %d (%s)", pid, cmd))
	}
	return holders
}

// LoopDevices returns the loop devices attached to imagePath.
func LoopDevices(ctx context.Context, imagePath string) ([]string, error) {
	if _, err := os.Stat(imagePath); errors.Is(err, os.ErrNotExist) {
		// losetup -j fails on a missing file; nothing can be attached to
		// a file that does not exist under that name.
		return nil, nil
	}
	out, err := runcmd.Output(ctx, "losetup", "-j", imagePath)
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, ":"); i > 0 {
			devs = append(devs, line[:i])
		}
	}
	return devs, nil
}

// DetachLoops makes sure no loop device is attached to imagePath.
//
// A device made by "mount -o loop" detaches itself on unmount, but the
// kernel may finish that a moment later (udev probes can hold it open), so
// this first waits briefly and only then detaches what is left: detaching
// a device that has just been freed could hit one that another pool has
// taken meanwhile.
func DetachLoops(ctx context.Context, imagePath string) error {
	devs, err := waitNoLoops(ctx, imagePath, 2*time.Second)
	if err != nil || len(devs) == 0 {
		return err
	}
	abs, _ := filepath.Abs(imagePath)
	for _, dev := range devs {
		if b := loopBackingFile(dev); b != "" && b != abs && b != imagePath {
			continue // reused by someone else since we listed it
		}
		// An error here usually means the device went away by itself;
		// the check below decides.
		_, _ = runcmd.Output(ctx, "losetup", "-d", dev)
	}
	devs, err = waitNoLoops(ctx, imagePath, 5*time.Second)
	if err != nil {
		return err
	}
	if len(devs) > 0 {
		return fmt.Errorf("loop devices still attached to %s: %s", imagePath, strings.Join(devs, ", "))
	}
	return nil
}

// waitNoLoops polls until no loop device is attached to imagePath or wait
// has passed, and returns what is still attached.
func waitNoLoops(ctx context.Context, imagePath string, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		devs, err := LoopDevices(ctx, imagePath)
		if err != nil || len(devs) == 0 || time.Now().After(deadline) {
			return devs, err
		}
		select {
		case <-ctx.Done():
			return devs, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Grow enlarges the image to newSize bytes and the mounted filesystem to
// fill it. Shrinking is refused: truncating the image would destroy data.
func Grow(ctx context.Context, imagePath, mountPoint string, newSize int64) error {
	st, err := os.Stat(imagePath)
	if err != nil {
		return fmt.Errorf("grow pool: %w", err)
	}
	if newSize < st.Size() {
		return fmt.Errorf("grow pool %s: new size %d is smaller than the current %d; shrinking is not supported", imagePath, newSize, st.Size())
	}
	if !IsMounted(mountPoint) {
		return fmt.Errorf("grow pool %s: %s is not mounted", imagePath, mountPoint)
	}
	devs, err := LoopDevices(ctx, imagePath)
	if err != nil {
		return fmt.Errorf("grow pool: %w", err)
	}
	if len(devs) == 0 {
		return fmt.Errorf("grow pool %s: no loop device is attached to it", imagePath)
	}
	if newSize > st.Size() {
		if err := os.Truncate(imagePath, newSize); err != nil {
			return fmt.Errorf("grow pool: truncate %s to %d bytes: %w", imagePath, newSize, err)
		}
	}
	for _, dev := range devs {
		if _, err := runcmd.Output(ctx, "losetup", "-c", dev); err != nil {
			return fmt.Errorf("grow pool: %w", err)
		}
	}
	if _, err := runcmd.Output(ctx, "btrfs", "filesystem", "resize", "max", mountPoint); err != nil {
		return fmt.Errorf("grow pool: %w", err)
	}
	return nil
}

// IsBtrfs reports whether path lies on a btrfs filesystem.
func IsBtrfs(path string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return uint32(st.Type) == SuperMagic, nil
}

// IsMounted reports whether a filesystem is mounted exactly at mountPoint.
func IsMounted(mountPoint string) bool {
	_, _, ok := mountSource(mountPoint)
	return ok
}

// mountSource returns the source and type of the topmost mount at
// mountPoint, according to /proc/self/mountinfo.
func mountSource(mountPoint string) (source, fstype string, ok bool) {
	want := canonical(mountPoint)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescape(fields[4]) != want {
			continue
		}
		for i := 5; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				// Later lines are mounted on top of earlier ones.
				fstype, source, ok = fields[i+1], unescape(fields[i+2]), true
				break
			}
		}
	}
	return source, fstype, ok
}

// canonical makes path comparable with mountinfo, which shows absolute
// paths with symlinks resolved.
func canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// unescape undoes mountinfo's octal escapes (\040 for space and so on).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopBackingFile returns the file behind a loop device such as
// /dev/loop3, or "" if dev is not an attached loop device.
func loopBackingFile(dev string) string {
	name := filepath.Base(dev)
	if !strings.HasPrefix(name, "loop") {
		return ""
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
