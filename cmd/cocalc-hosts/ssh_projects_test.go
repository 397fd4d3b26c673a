package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/podman"
	"github.com/sagemathinc/cocalc-hosts/pkg/podman/podmantest"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// Projects on a remote (SSH-bootstrapped) host, in real podman containers
// inside the test VM; an agent upgrade leaves them running and known; they
// move to a second test VM and back (sshMoves).
func TestSSHProjectsSurviveUpgrade(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{c.fleetKey()}})
	podmanConf(t, vm)
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
	c.json(&created, "project", "create", "--host", "r1", "--image", "localhost/remote-base:1", "--memory", "128M", "--disk", "256M", "--start")
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
	sshMoves(t, c, vm, tarball, id)
	c.ok("project", "delete", id, "--purge", "--yes")
	if left := containerID(); left != "" {
		t.Fatalf("container left after delete: %s", left)
	}
}

// podmanConf puts the podman settings this machine needs (machine.md) on
// a VM, as its operator would.
func podmanConf(t *testing.T, vm *sshvm.VM) {
	vm.MustExec(t, "mkdir -p /etc/containers && cat > /etc/containers/containers.conf <<'EOF'\n"+podmantest.ContainersConf+"EOF\n")
}

// sshMoves moves project id (running on host r1, in vm1) to host r2 in a
// second VM and back. The VMs have no network between them at first: the
// direct transfer cannot connect, the move is relayed through the control
// plane, and `project show` says why. With a cable between them the move
// back goes direct and is incremental. Each time the files and snapshots
// arrive equal by checksum and the project runs there; the old copy is
// gone after cleanup.
func sshMoves(t *testing.T, c *sshCLI, vm1 *sshvm.VM, tarball, id string) {
	t.Helper()
	vm2 := sshvm.New(t, sshvm.Options{RootKeys: []string{c.fleetKey()}})
	podmanConf(t, vm2)
	c.ok("create", "--cloud", "ssh", "--name", "r2", "--address", "root@"+vm2.Addr)
	stage(t, vm2, tarball)
	c.ok("image", "build", "localhost/remote-base:1", "--host", "r2")
	c.ok("project", "exec", id, "--", "sh", "-c", "head -c 3000000 /dev/urandom > big; echo 1 > n")
	c.ok("project", "snapshot", id, "--name", "s1")
	c.ok("project", "exec", id, "--", "sh", "-c", "echo 2 > n; mkdir d; echo x > d/y")
	c.ok("project", "snapshot", id, "--name", "s2")
	// The home and every snapshot: names, modes, owners, file sizes,
	// contents. Scheduled (auto-) snapshots are left out: an agent takes
	// one of an active project whenever its schedule says, on either VM,
	// at any moment of the test (and a directory's size on btrfs counts
	// the names in it, so only files' sizes are compared).
	sums := func(vm *sshvm.VM) string {
		t.Helper()
		find := fmt.Sprintf("find projects/%[1]s snapshots/%[1]s -path 'snapshots/%[1]s/%[2]s*' -prune -o -type f", id, storage.AutoPrefix)
		return vm.MustExec(t, "cd /btrfs && "+find+" -printf '%p %m %U %s\\n' -o -printf '%p %m %U\\n' | sort && "+
			find+" -print0 | sort -z | xargs -0 sha256sum")
	}
	type moved struct {
		HostName string `json:"host_name"`
		State    string `json:"state"`
		LastMove struct {
			Phase    string `json:"phase"`
			Path     string `json:"path"`
			PathNote string `json:"path_note"`
			Method   string `json:"method"`
			Bytes    int64  `json:"bytes"`
		} `json:"last_move"`
	}
	move := func(to string, from, dst *sshvm.VM) moved {
		t.Helper()
		before := sums(from)
		c.ok("project", "move", id, "--to", to)
		var p moved
		c.json(&p, "project", "show", id)
		if p.HostName != to || p.State != "running" || p.LastMove.Phase != "done" || p.LastMove.Method != "btrfs" {
			t.Fatalf("after the move to %s: %+v", to, p)
		}
		if after := sums(dst); after != before {
			t.Fatalf("the move to %s changed the files or snapshots:\nbefore:\n%s\nafter:\n%s", to, before, after)
		}
		return p
	}

	p := move("r2", vm1, vm2)
	if p.LastMove.Path != "relayed" || !strings.Contains(p.LastMove.PathNote, "direct transfer to "+vm2.Addr) {
		t.Fatalf("between VMs that cannot reach each other: %+v, want relayed with the reason", p.LastMove)
	}
	if out, _ := c.ok("project", "exec", id, "--", "sh", "-c", "cat n; echo 3 > n"); out != "2\n" {
		t.Fatalf("on r2: %q", out)
	}

	cable := sshvm.Connect(t, vm1, vm2)
	p = move("r1", vm2, vm1)
	if p.LastMove.Path != "direct" || p.LastMove.PathNote != "" || p.LastMove.Bytes > 1<<20 {
		t.Fatalf("the move back over the cable: %+v, want direct and incremental (under 1 MiB)", p.LastMove)
	}
	c.ok("project", "move", id, "--cleanup")
	if out := vm2.MustExec(t, "ls /btrfs/projects /btrfs/snapshots"); strings.Contains(out, id) {
		t.Fatalf("the old copy on r2 is still there after cleanup:\n%s", out)
	}

	// The cable is pulled while a move streams directly: both sides give
	// up on the stalled stream and the job retries by itself; the retry
	// cannot reach r2 directly and relays, and the move completes with the
	// files as they were (nothing of it left on either VM).
	c.ok("project", "exec", id, "--", "sh", "-c", "head -c 150000000 /dev/urandom > big2")
	before := sums(vm1)
	in := "/btrfs/transfer/" + id + "/in"
	if left := vm2.MustExec(t, "ls -A "+in+" 2>/dev/null; true"); left != "" {
		t.Fatalf("r2 holds transfer state before the move: %s", left)
	}
	// The cable is pulled while big2 streams: the snapshots r2 lacks go
	// first (each by a connection of its own: a cable pulled between two
	// is a refused dial, not a stall), then big2 with the first one made
	// after it (the live home's, or an automatic snapshot's that came
	// first), 150 MB for over a second: r2 holds 8 MiB more than those
	// snapshots. (du counts each received snapshot's files whole, 3 MiB
	// each here, however little its incremental stream sent.)
	lacked := vm1.MustExec(t, "du -sm --apparent-size /btrfs/snapshots/"+id+" | cut -f1")
	mv, out, done := c.startMove(id, "r2")
	vm2.MustExec(t, fmt.Sprintf(`for i in $(seq 1200); do [ "$(du -sm --apparent-size %s 2>/dev/null | cut -f1)" -gt $((%s + 8)) ] 2>/dev/null && exit 0; sleep 0.05; done; exit 1`, in, strings.TrimSpace(lacked)))
	cable.Set(t, false)
	<-done
	if mv.ProcessState.ExitCode() != 0 {
		t.Fatalf("the move over a pulled cable did not complete by retrying:\n%s", out)
	}
	var cut struct {
		HostName string `json:"host_name"`
		State    string `json:"state"`
		LastMove struct {
			Phase    string `json:"phase"`
			Path     string `json:"path"`
			PathNote string `json:"path_note"`
			Error    string `json:"error"`
		} `json:"last_move"`
	}
	c.json(&cut, "project", "show", id)
	if cut.HostName != "r2" || cut.State != "running" || cut.LastMove.Phase != "done" || cut.LastMove.Path != "relayed" ||
		!strings.Contains(cut.LastMove.PathNote, "direct transfer to "+vm2.Addr) || !strings.Contains(cut.LastMove.Error, "no progress for 20s") {
		t.Fatalf("after the cut: %+v, want done on r2, relayed after an attempt that stalled\n%s", cut, out)
	}
	if after := sums(vm2); after != before {
		t.Fatalf("the move over the cut changed the files or snapshots:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, vm := range []*sshvm.VM{vm1, vm2} {
		if left := vm.MustExec(t, "ls -A /btrfs/transfer 2>/dev/null; true"); left != "" {
			t.Fatalf("transfer state left on %s: %s", vm.Name, left)
		}
	}
}
