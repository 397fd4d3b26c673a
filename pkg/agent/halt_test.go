package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// A halt ends every process of a project (a writer running in the
// background included) and leaves the container, exited, for the stop
// that removes it; after it the project starts again. Once with the
// container as the agent last saw it (a status just before, as a move
// asks), once after an agent restart, when only podman knows it.
func TestHalt(t *testing.T) {
	h := newHost(t, nil)
	ctx := tctx(t)
	id := h.newProject(agentapi.Limits{MemoryBytes: 100 * mib}, 0)
	home := filepath.Join(h.cfg.PoolPath, "projects", id)
	for round, restart := range []bool{false, true} {
		h.mustRun(id, `nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > ~/counter; done' >/dev/null 2>&1 &`)
		deadline := time.Now().Add(20 * time.Second)
		for !fileHas(home, "counter") {
			if time.Now().After(deadline) {
				t.Fatal("the writer in the project did not start")
			}
			time.Sleep(20 * time.Millisecond)
		}
		st, err := h.client.Project(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cg := containerCgroup(t, h, st.ContainerID)
		if restart {
			h.kill()
			h.start()
		}
		// A transfer never replaces a running project, nor freezes it,
		// whether the agent started it or found it running when it
		// started.
		if err := h.client.CommitTransfer(ctx, id, agentapi.CommitTransferRequest{Home: "in"}); !agentapi.IsCode(err, agentapi.CodeConflict) {
			t.Fatalf("round %d: commit onto the running project: %v; want a conflict", round, err)
		}
		if err := h.client.Freeze(ctx, id, true); !agentapi.IsCode(err, agentapi.CodeConflict) {
			t.Fatalf("round %d: freeze of the running project: %v; want a conflict", round, err)
		}
		halted, err := h.client.HaltProject(ctx, id)
		if err != nil || halted.State != agentapi.ProjectStopped {
			t.Fatalf("round %d: halt = %+v, %v; want stopped", round, halted, err)
		}
		// Nothing of the project runs: its cgroup is empty or gone.
		if b, err := os.ReadFile(filepath.Join(cg, "cgroup.events")); err == nil && !strings.Contains(string(b), "populated 0") {
			t.Fatalf("round %d: after the halt the container's cgroup holds processes:\n%s", round, b)
		}
		// The container is there, exited, until the stop removes it.
		// Podman says so once conmon has reaped its first process, which
		// the halt does not wait for (on a busy machine, a while after).
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			out, err := h.env.Podman.Run(ctx, "inspect", "-f", "{{.State.Running}}", st.ContainerID)
			if err == nil && strings.TrimSpace(out) == "false" {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("round %d: container after the halt: running=%q, %v; want it there, exited", round, out, err)
			}
		}
		if again, err := h.client.HaltProject(ctx, id); err != nil || again.State != agentapi.ProjectStopped {
			t.Fatalf("round %d: second halt = %+v, %v", round, again, err)
		}
		if _, err := h.client.StopProject(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := h.env.Podman.Run(ctx, "container", "exists", st.ContainerID); err == nil {
			t.Fatalf("round %d: the container is still there after the stop", round)
		}
		if _, err := h.client.StartProject(ctx, id, agentapi.StartProjectRequest{Image: h.env.Image, Limits: agentapi.Limits{MemoryBytes: 100 * mib}}); err != nil {
			t.Fatalf("round %d: start after the halt: %v", round, err)
		}
	}
}

func fileHas(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return err == nil && len(strings.TrimSpace(string(b))) > 0
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// containerCgroup is the cgroup v2 directory of a running container.
func containerCgroup(t *testing.T, h *host, cid string) string {
	t.Helper()
	pid, err := h.env.Podman.Run(tctx(t), "inspect", "-f", "{{.State.Pid}}", cid)
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, "/proc/"+strings.TrimSpace(pid)+"/cgroup")
	for _, line := range strings.Split(b, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
				if _, err := os.Stat(filepath.Join(root, p, "cgroup.events")); err == nil {
					return filepath.Join(root, p)
				}
			}
		}
	}
	t.Fatalf("no cgroup v2 for container %s in:\n%s", cid, b)
	return ""
}
