package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/sshvm"
)

// sshCLI runs the real cocalc-hosts binary (the one testscript.Main puts
// on PATH) against its own state, config and fleet key, for end-to-end
// tests of hosts adopted over SSH from test VMs.
type sshCLI struct {
	t      testing.TB
	dir    string
	env    []string
	secret string
}

func newSSHCLI(t testing.TB, backend string) *sshCLI {
	sshvm.NeedRoot(t)
	dir := t.TempDir()
	c := &sshCLI{t: t, dir: dir, secret: "backup-" + filepath.Base(dir)}
	secretFile := filepath.Join(dir, "backup-password")
	if err := os.WriteFile(secretFile, []byte(c.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("bootstrap:\n  ssh_wait: 4s\n  agent_wait: 30s\n  secrets: backup-password=%s\nproviders:\n  ssh:\n    connect_wait: 4s\n", secretFile)
	if backend == "postgres" {
		cfg += "db: " + pgtest.Shared(t).NewDatabase(t) + "\n"
	}
	if err := os.MkdirAll(filepath.Join(dir, "config", "cocalc-hosts"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "cocalc-hosts", "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
	return c
}

// run runs the CLI and returns stdout, stderr and the exit code.
func (c *sshCLI) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command("cocalc-hosts", args...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs the CLI and fails the test unless it exits 0.
func (c *sshCLI) ok(args ...string) (string, string) {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("cocalc-hosts %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}

// fails runs the CLI, wants exit code want, and an error line with every
// one of msgs; it returns the error line.
func (c *sshCLI) fails(want int, msgs []string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != want {
		c.t.Fatalf("cocalc-hosts %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	line := ""
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			line = l
		}
	}
	for _, m := range msgs {
		if !strings.Contains(line, m) {
			c.t.Fatalf("cocalc-hosts %s: error %q does not mention %q\nstderr:\n%s", strings.Join(args, " "), line, m, errOut)
		}
	}
	return line
}

func (c *sshCLI) json(v any, args ...string) {
	c.t.Helper()
	out, _ := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("cocalc-hosts %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *sshCLI) fleetKey() string {
	c.t.Helper()
	out, _ := c.ok("ssh-key")
	return strings.TrimSpace(out)
}

type hostJSON struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Status     string         `json:"status"`
	LastError  string         `json:"last_error"`
	LastAction string         `json:"last_action"`
	Runtime    map[string]any `json:"runtime"`
	Spec       map[string]any `json:"spec"`
	Agent      *struct {
		Reachable   bool    `json:"reachable"`
		Error       string  `json:"error"`
		LastContact *string `json:"last_contact"`
		Status      *struct {
			HostID  string `json:"host_id"`
			PID     int    `json:"pid"`
			Version string `json:"version"`
			Storage struct {
				Kind string `json:"kind"`
				Path string `json:"path"`
			} `json:"storage"`
		} `json:"status"`
	} `json:"agent"`
}

func (c *sshCLI) show(name string) hostJSON {
	c.t.Helper()
	var h hostJSON
	c.json(&h, "show", name)
	return h
}

func TestSSHLifecycleSQLite(t *testing.T)   { sshLifecycle(t, "sqlite") }
func TestSSHLifecyclePostgres(t *testing.T) { sshLifecycle(t, "postgres") }

// create --cloud ssh → bootstrap → agent healthy → show running →
// stop/start → upgrade → delete (keeping /btrfs) → adopt again → delete --purge.
func sshLifecycle(t *testing.T, backend string) {
	parallel(t)
	c := newSSHCLI(t, backend)
	key := c.fleetKey()
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{key}})
	addr := "root@" + vm.Addr

	out, progress := c.ok("create", "--cloud", "ssh", "--name", "vm1", "--address", addr)
	if !strings.Contains(out, "vm1: running") {
		t.Fatalf("create: %s", out)
	}
	for _, want := range []string{"==> connecting to " + addr + ":22", "==> uploading the agent", "==> data disk", "enabled btrfs quotas", "==> done"} {
		if !strings.Contains(progress, want) {
			t.Fatalf("create progress lacks %q:\n%s", want, progress)
		}
	}
	h := c.show("vm1")
	if h.Status != "running" || h.Agent == nil || !h.Agent.Reachable || h.Agent.Status.HostID != h.ID ||
		h.Agent.Status.Storage.Kind != "btrfs" || h.Agent.Status.Storage.Path != "/btrfs" || h.Agent.LastContact == nil {
		t.Fatalf("show after create: %+v %+v", h, h.Agent)
	}
	if h.Runtime["ssh_host"] != vm.Addr || h.Runtime["ssh_user"] != "root" || !strings.HasPrefix(fmt.Sprint(h.Runtime["ssh_host_key"]), "ssh-ed25519 ") {
		t.Fatalf("runtime: %v", h.Runtime)
	}
	pid := h.Agent.Status.PID
	text, _ := c.ok("show", "vm1")
	if !strings.Contains(text, "agent:") || !strings.Contains(text, "on btrfs") {
		t.Fatalf("show:\n%s", text)
	}
	boot, _ := c.ok("logs", "--boot", "vm1")
	if !strings.Contains(boot, "==> running the bootstrap script as root") || !strings.Contains(boot, "==> host ready") {
		t.Fatalf("logs --boot:\n%s", boot)
	}
	// The agent's secrets are root-only files, and its environment has none.
	if out := vm.MustExec(t, "stat -c '%a %U' /etc/cocalc-hosts/secrets/backup-password"); strings.TrimSpace(out) != "600 root" {
		t.Fatalf("secret file: %q", out)
	}
	if env := vm.MustExec(t, fmt.Sprintf("tr '\\0' '\\n' < /proc/%d/environ", pid)); strings.Contains(env, c.secret) || strings.Contains(env, "COCALC") {
		t.Fatalf("agent environment:\n%s", env)
	}

	// stop stops the agent (the machine and its pool stay); start brings it back.
	out, _ = c.ok("stop", "vm1")
	if !strings.Contains(out, "vm1: off") {
		t.Fatalf("stop: %s", out)
	}
	if out := vm.MustExec(t, "pgrep -f '[c]ocalc-hosts agent' || echo none; findmnt -n -o FSTYPE /btrfs"); out != "none\nbtrfs\n" {
		t.Fatalf("after stop, want no agent and the pool still mounted:\n%s", out)
	}
	out, _ = c.ok("start", "vm1")
	if !strings.Contains(out, "vm1: running") {
		t.Fatalf("start: %s", out)
	}
	h = c.show("vm1")
	if !h.Agent.Reachable || h.Agent.Status.PID == pid {
		t.Fatalf("after start: %+v", h.Agent)
	}
	pid = h.Agent.Status.PID

	// upgrade installs the agent and restarts it.
	vm.MustExec(t, "cp /usr/local/bin/cocalc-hosts /root/old && echo older-build >> /root/old && mv /root/old /usr/local/bin/cocalc-hosts")
	out, progress = c.ok("upgrade", "vm1")
	if !strings.Contains(out, "vm1: running") || !strings.Contains(progress, "==> uploading the agent") {
		t.Fatalf("upgrade: %s\n%s", out, progress)
	}
	h = c.show("vm1")
	if !h.Agent.Reachable || h.Agent.Status.PID == pid || h.LastAction != "upgrade" {
		t.Fatalf("after upgrade: %+v %+v", h, h.Agent)
	}
	exe, _ := os.Executable()
	local, _ := os.ReadFile(exe)
	if sum := strings.Fields(vm.MustExec(t, "sha256sum /usr/local/bin/cocalc-hosts"))[0]; sum != fmt.Sprintf("%x", sha256.Sum256(local)) {
		t.Fatalf("the upgraded binary is not this program: %s", sum)
	}
	var all []map[string]any
	c.json(&all, "upgrade", "--all")
	if len(all) != 1 || all[0]["host"] != "vm1" || all[0]["result"] != "upgraded" {
		t.Fatalf("upgrade --all: %v", all)
	}

	// delete uninstalls the agent and keeps the pool and its data.
	vm.MustExec(t, "echo precious > /btrfs/data.txt")
	out, _ = c.ok("delete", "vm1", "--yes")
	if !strings.Contains(out, "vm1: deprovisioned") {
		t.Fatalf("delete: %s", out)
	}
	if out := vm.MustExec(t, "ls /usr/local/bin /etc/cocalc-hosts 2>&1; pgrep -f '[c]ocalc-hosts agent' || echo no-agent; cat /btrfs/data.txt; grep -c ' /btrfs ' /etc/fstab"); !strings.Contains(out, "No such file") ||
		strings.Contains(out, "cocalc-hosts\n") || !strings.Contains(out, "no-agent\nprecious\n1\n") {
		t.Fatalf("after delete, want the agent gone and the pool kept:\n%s", out)
	}

	// The machine can be adopted again: it finds its pool; delete
	// --purge then erases it.
	c.ok("create", "--cloud", "ssh", "--name", "vm2", "--address", addr)
	if out := vm.MustExec(t, "cat /btrfs/data.txt"); out != "precious\n" {
		t.Fatalf("re-adopted pool lost data: %q", out)
	}
	c.ok("delete", "vm2", "--yes", "--purge")
	if out := vm.MustExec(t, "mountpoint /btrfs 2>&1; ls /var/lib/cocalc-hosts 2>&1; grep -c ' /btrfs ' /etc/fstab || true"); !strings.Contains(out, "No such file") ||
		!strings.HasSuffix(out, "0\n") {
		t.Fatalf("after delete --purge, want no pool:\n%s", out)
	}
	var list []hostJSON
	c.json(&list, "list")
	if len(list) != 0 {
		t.Fatalf("hosts left: %+v", list)
	}
}

// A non-root login user with sudo, a data disk, progress as JSON lines.
func TestSSHSudoUserDataDiskJSON(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	key := c.fleetKey()
	vm := sshvm.New(t, sshvm.Options{})
	vm.AddUser(t, "deploy", true, key)
	disk := sshvm.LoopDevice(t, 4096, "")
	out, progress, code := c.run("create", "--cloud", "ssh", "--name", "gpu1", "--address", "deploy@"+vm.Addr+":22", "--data-disk", disk, "-o", "json")
	if code != 0 {
		t.Fatalf("create: %d\n%s\n%s", code, out, progress)
	}
	var sub struct {
		Host hostJSON `json:"host"`
	}
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub.Host.Status != "running" {
		t.Fatalf("create JSON: %v %s", err, out)
	}
	// Every progress line on stderr is a JSON event; boot log lines are among them.
	sawDisk := false
	for _, l := range strings.Split(strings.TrimSpace(progress), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("progress line is not JSON: %q", l)
		}
		if m, _ := ev["message"].(string); strings.HasPrefix(m, "formatting "+disk) {
			sawDisk = true
		}
	}
	if !sawDisk {
		t.Fatalf("no progress event for formatting the data disk:\n%s", progress)
	}
	h := c.show("gpu1")
	if !h.Agent.Reachable || h.Runtime["ssh_user"] != "deploy" || h.Runtime["data_disk_device"] != disk {
		t.Fatalf("show: %+v %+v", h, h.Agent)
	}
	var boot struct {
		Run   map[string]any   `json:"run"`
		Lines []map[string]any `json:"lines"`
	}
	c.json(&boot, "logs", "--boot", "gpu1")
	if boot.Run["result"] != "done" || len(boot.Lines) < 10 {
		t.Fatalf("logs --boot -o json: %v, %d lines", boot.Run, len(boot.Lines))
	}
	c.ok("delete", "gpu1", "--yes", "--purge")
	if out := vm.MustExec(t, "blkid -p -o value -s TYPE "+disk+" || echo wiped"); out != "wiped\n" {
		t.Fatalf("purge must wipe the data disk: %q", out)
	}
}

// A changed host key is refused with how to re-pin; a deliberate re-pin
// with the right fingerprint lets the host work again.
func TestSSHChangedHostKey(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{c.fleetKey()}})
	c.ok("create", "--cloud", "ssh", "--name", "vm1", "--address", "root@"+vm.Addr)
	id := c.show("vm1").ID
	vm.PowerOff(t)
	vm.SetHostKey(t, nil) // reinstalled
	vm.Boot(t)
	fp := ssh.FingerprintSHA256(vm.HostKey())
	// (The ssh provider knows the host by its id, which commands accept.)
	c.fails(6, []string{"host key of " + id, "changed", "ssh-key repin " + id + " --fingerprint " + fp}, "stop", "vm1")
	c.fails(2, []string{"offers host key " + fp + ", not SHA256:wrong", "nothing was re-pinned"}, "ssh-key", "repin", "vm1", "--fingerprint", "SHA256:wrong")
	out, _ := c.ok("ssh-key", "repin", "vm1", "--fingerprint", fp)
	if !strings.Contains(out, "pinned host key "+fp) {
		t.Fatalf("repin: %s", out)
	}
	// The reboot took the agent and the pool's mount; start brings both back.
	out, _ = c.ok("start", "vm1")
	if !strings.Contains(out, "vm1: running") {
		t.Fatalf("start after re-pin: %s", out)
	}
	if h := c.show("vm1"); !h.Agent.Reachable {
		t.Fatalf("agent after re-pin: %+v", h.Agent)
	}
}

// Bad input: each a clear error, nothing left that a re-run cannot finish.
func TestSSHBadInput(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	key := c.fleetKey()
	// Root trusts someone else's key; deploy exists but trusts ours.
	vm := sshvm.New(t, sshvm.Options{})
	vm.AddUser(t, "deploy", false, key)

	// Refused before anything is stored (exit 2).
	c.fails(2, []string{"invalid --address", "USER@HOST[:PORT]"}, "create", "--cloud", "ssh", "--name", "x", "--address", "root@")
	c.fails(2, []string{"give its address with --address"}, "create", "--cloud", "ssh", "--name", "x")
	c.fails(2, []string{"give --cloud ssh too"}, "create", "--name", "x", "--address", "root@"+vm.Addr)
	c.fails(2, []string{"invalid --data-disk"}, "create", "--cloud", "ssh", "--name", "x", "--address", "root@"+vm.Addr, "--data-disk", "sdb; rm -rf /")
	var list []hostJSON
	if c.json(&list, "list"); len(list) != 0 {
		t.Fatalf("refused requests stored hosts: %+v", list)
	}

	// Wrong key: root does not trust ours.
	c.fails(6, []string{"SSH login as root@" + vm.Addr + ":22 was refused for the fleet key", "cocalc-hosts ssh-key", "~root/.ssh/authorized_keys"},
		"create", "--cloud", "ssh", "--name", "wrongkey", "--address", "root@"+vm.Addr)
	// One machine is one host, even when the first attempt failed.
	c.fails(4, []string{"already host wrongkey"}, "create", "--cloud", "ssh", "--name", "again", "--address", "root@"+vm.Addr)
	// Fixing the cause and starting the host finishes it.
	vm.MustExec(t, "echo '"+key+"' >> /root/.ssh/authorized_keys")
	if out, _ := c.ok("start", "wrongkey"); !strings.Contains(out, "wrongkey: running") {
		t.Fatalf("start after authorizing the key: %s", out)
	}
	c.ok("delete", "wrongkey", "--yes")

	// Wrong user.
	c.fails(6, []string{"SSH login as nobody2@" + vm.Addr + ":22 was refused", "user nobody2 exists"},
		"create", "--cloud", "ssh", "--name", "wronguser", "--address", "nobody2@"+vm.Addr)
	c.ok("delete", "wronguser", "--yes", "--forget")

	// No sudo for a non-root user.
	c.fails(6, []string{"user deploy cannot use sudo without a password", "NOPASSWD"},
		"create", "--cloud", "ssh", "--name", "nosudo", "--address", "deploy@"+vm.Addr)
	if h := c.show("nosudo"); h.Status != "error" || !strings.Contains(h.LastError, "sudo") {
		t.Fatalf("host after a failed bootstrap: %+v", h)
	}
	boot, _ := c.ok("logs", "--boot", "nosudo")
	if !strings.Contains(boot, "ERROR: user deploy cannot use sudo") {
		t.Fatalf("logs --boot:\n%s", boot)
	}
	// Nothing was installed, and without sudo nothing can be removed.
	c.fails(6, []string{"sudo: a password is required", "delete --forget"}, "delete", "nosudo", "--yes")
	c.ok("delete", "nosudo", "--yes", "--forget")

	// Unreachable: retried for bootstrap.ssh_wait, then a clear error.
	c.fails(6, []string{"cannot reach SSH on root@" + vm.Addr + ":2222", "attempts", "connection refused", "port 2222 is open"},
		"create", "--cloud", "ssh", "--name", "unreachable", "--address", "root@"+vm.Addr+":2222")
	c.fails(6, []string{"cannot reach SSH", "delete --forget"}, "delete", "unreachable", "--yes")
	c.ok("delete", "unreachable", "--yes", "--forget")
	if c.json(&list, "list"); len(list) != 0 {
		t.Fatalf("hosts left: %+v", list)
	}
}

// Hosts that are not bootstrapped over SSH have no upgrade and no pin.
func TestSSHUpgradeRefusedForLocal(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	c.fails(3, []string{"no host"}, "upgrade", "nope")
	c.fails(2, []string{"one host"}, "upgrade")
	c.fails(2, []string{"not both"}, "upgrade", "x", "--all")
	out, _ := c.ok("upgrade", "--all")
	if !strings.Contains(out, "no hosts bootstrapped over SSH") {
		t.Fatalf("upgrade --all with no hosts: %s", out)
	}
}

// A bootstrap that fails half-way (at the data disk, after the earlier
// steps ran) reports its last boot-log lines; once the cause is fixed,
// `start` runs it again and it completes.
func TestSSHHalfWayFailureThenStart(t *testing.T) {
	parallel(t)
	c := newSSHCLI(t, "sqlite")
	vm := sshvm.New(t, sshvm.Options{RootKeys: []string{c.fleetKey()}})
	disk := sshvm.LoopDevice(t, 4096, "mkfs.ext4 -q")
	c.fails(6, []string{`at step "data disk": data disk ` + disk + " holds a filesystem of type ext4; refusing to format it", "wipefs -a", "last lines of the boot log:", "==> packages", "==> data disk", "logs --boot vm1"},
		"create", "--cloud", "ssh", "--name", "vm1", "--address", "root@"+vm.Addr, "--data-disk", disk)
	boot, _ := c.ok("logs", "--boot", "vm1")
	if !strings.Contains(boot, "ERROR: data disk "+disk+" holds a filesystem of type ext4") || strings.Contains(boot, "==> agent service") {
		t.Fatalf("logs --boot:\n%s", boot)
	}
	if h := c.show("vm1"); h.Status != "error" {
		t.Fatalf("status %s, want error", h.Status)
	}
	vm.MustExec(t, "wipefs -a -q "+disk)
	out, progress := c.ok("start", "vm1")
	if !strings.Contains(out, "vm1: running") || !strings.Contains(progress, "formatting "+disk+" ("+disk+") as btrfs") {
		t.Fatalf("start: %s\n%s", out, progress)
	}
	if h := c.show("vm1"); !h.Agent.Reachable {
		t.Fatalf("agent: %+v", h.Agent)
	}
	c.ok("delete", "vm1", "--yes", "--purge")
}
