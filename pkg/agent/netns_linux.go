package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
)

// The ingress reaches a port inside a project by connecting to it from
// within the container's own network namespace, on its loopback: a server
// that listens on localhost only (Jupyter's default) is reachable, and
// nothing depends on how podman wires the container's network.

// netnsLookupTimeout bounds a shared podman lookup, which runs on even
// if the request that started it goes away (others wait on it).
const netnsLookupTimeout = time.Minute

func nsPath(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/ns/net" }

// netnsInode is the inode of process pid's network namespace.
func netnsInode(pid int) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(nsPath(pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// errNotRunning says that a project has no running container.
func errNotRunning(id string) error {
	return perr(agentapi.CodeNotRunning, "project %s is not running", id)
}

// projectNetns returns the pid whose network namespace is project id's,
// asking podman only when the container last seen is gone.
func (r *runtime) projectNetns(ctx context.Context, id string) (int, error) {
	if s, ok := r.lastSeen(id); ok && s.netns != 0 {
		if ino, err := netnsInode(s.PID); err == nil && ino == s.netns {
			return s.PID, nil
		}
	}
	// Once per project at a time: the first requests to a project come
	// in a burst (a browser, a load generator: one per connection), and
	// each would otherwise run its own podman inspect.
	ch := r.netnsLookups.DoChan(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), netnsLookupTimeout)
		defer cancel()
		s, err := r.describe(ctx, id)
		if errors.Is(err, podman.ErrNotFound) || (err == nil && s.netns == 0) {
			return 0, errNotRunning(id)
		}
		return s.PID, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return 0, res.Err
		}
		return res.Val.(int), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// dialProject connects to port on the loopback inside project id.
func (r *runtime) dialProject(ctx context.Context, id string, port int) (net.Conn, error) {
	pid, err := r.projectNetns(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := dialInNetns(ctx, pid, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("project %s port %d: %w", id, port, err)
	}
	return c, nil
}

// dialInNetns connects to addr from the network namespace of pid. The
// socket is made while this goroutine's thread is in that namespace (a
// socket stays in the namespace it was made in); the thread then goes
// back. A thread that cannot go back is never used again: it stays locked
// and ends with the goroutine.
func dialInNetns(ctx context.Context, pid int, addr string) (net.Conn, error) {
	target, err := os.Open(nsPath(pid))
	if err != nil {
		return nil, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	defer target.Close()
	goruntime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		goruntime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		goruntime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace of pid %d: %w", pid, err)
	}
	var d net.Dialer
	c, derr := d.DialContext(ctx, "tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends it with this
		// goroutine instead of running others in the wrong namespace.
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leave network namespace of pid %d: %w", pid, err)
	}
	goruntime.UnlockOSThread()
	return c, derr
}
