package podman

import (
	"context"
	"errors"
	"os"
	"testing"
)

// KillAll kills only a container's own cgroup: a pid that is not in the
// cgroup named for the container (a stale listing's pid, now another
// process's) is refused, and that process lives on — here, the test's.
func TestKillAllRefusesAnotherProcess(t *testing.T) {
	for _, c := range []Container{
		{Name: "stale", ID: "0123456789abcdef", PID: os.Getpid()},
		{Name: "no-pid", ID: "0123456789abcdef"},
		{Name: "gone", ID: "0123456789abcdef", PID: 1 << 30},
	} {
		if err := KillAll(context.Background(), c); !errors.Is(err, ErrNoCgroupKill) {
			t.Errorf("KillAll(%s) = %v; want ErrNoCgroupKill", c.Name, err)
		}
	}
}
