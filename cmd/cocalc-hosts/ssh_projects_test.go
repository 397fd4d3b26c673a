package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// Projects on a remote (SSH-bootstrapped) host, in real podman containers
// inside the test VM; an agent upgrade leaves them running and known.
func TestSSHProjectsSurviveUpgrade(t *testing.T) {
	t.Parallel()
	c := newSSHCLI(t, "sqlite")
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{c.fleetKey()}})
	// The podman settings this machine needs (machine.md), set on the host
	// as its operator would.
	vm.MustExec(t, "mkdir -p /etc/containers && cat > /etc/containers/containers.conf <<'EOF'\n"+podmantest.ContainersConf+"EOF\n")
	c.ok("create", "--cloud", "ssh", "--name", "r1", "--address", "root@"+vm.Addr)

	// No registry or mirror is reachable from the VM: the image's root
	// filesystem comes from this machine's build cache, put into the
	// host's image cache as on an air-gapped host, and `image build`
	// imports it from there.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tarball, _, err := podman.CachedRootfs(ctx, podmantest.CacheDir, podman.DefaultBuildSpec, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stage(t, vm, tarball)
	out, _ := c.ok("image", "build", "localhost/remote-base:1", "--host", "r1")
	if !strings.Contains(out, "remote-base") {
		t.Fatalf("image build: %s", out)
	}

	var created struct {
		Project struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"project"`
	}
	c.json(&created, "project", "create", "--host", "r1", "--image", "localhost/remote-base:1", "--memory", "128M", "--disk", "64M", "--start")
	id := created.Project.ID
	if created.Project.State != "running" {
		t.Fatalf("project create --start: %+v", created)
	}
	if out, _ := c.ok("project", "exec", id, "--", "sh", "-c", "echo kept > ~/f; id -u"); out != "1000\n" {
		t.Fatalf("exec in the remote project: %q", out)
	}
	containerID := func() string {
		return strings.TrimSpace(vm.MustExec(t, "podman ps -q --no-trunc --filter label="+podman.LabelProject+"="+id))
	}
	before := containerID()
	if before == "" {
		t.Fatalf("no running container for project %s in the VM:\n%s", id, vm.MustExec(t, "podman ps -a"))
	}

	agentPID := func() int {
		h := c.show("r1")
		if h.Agent == nil || h.Agent.Status == nil {
			t.Fatalf("no agent status: %+v", h)
		}
		return h.Agent.Status.PID
	}
	pid := agentPID()
	c.ok("upgrade", "r1")
	if agentPID() == pid {
		t.Fatal("the upgrade did not restart the agent")
	}
	if after := containerID(); after != before {
		t.Fatalf("the project's container changed over the upgrade: %s → %s", before, after)
	}
	if out, _ := c.ok("project", "exec", id, "--", "cat", "f"); out != "kept\n" {
		t.Fatalf("after the upgrade: %q", out)
	}
	var shown struct {
		State string `json:"state"`
	}
	raw, _ := c.ok("project", "show", id, "-o", "json")
	if err := json.Unmarshal([]byte(raw), &shown); err != nil || shown.State != "running" {
		t.Fatalf("project show after the upgrade: %v %s", err, raw)
	}
	c.ok("project", "delete", id, "--purge", "--yes")
	if left := containerID(); left != "" {
		t.Fatalf("container left after delete: %s", left)
	}
}
