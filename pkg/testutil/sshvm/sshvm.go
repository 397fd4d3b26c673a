// Package sshvm makes throwaway "VMs" for tests: a network namespace
// with its own /30 address pair in 10.250.0.0/16, and an OpenSSH server
// running chrooted in a Debian rootfs, in private mount, UTS and PID
// namespaces. Each VM has its own disk: an overlay whose lower layer is a
// rootfs built once with mmdebstrap and cached (keyed by its package
// list), and whose upper layer is in the test's temporary directory.
//
// Traffic only ever goes to the VM's address, which exists on the two
// ends of one veth pair and nowhere else. Everything a VM makes is
// removed when its test ends, also when it fails: its processes (killing
// the PID namespace's init ends them all), its mounts (they live in the
// VM's mount namespace), its network namespace and veth pair.
//
// Tests that use it must run as root; others are skipped.
package sshvm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Packages are installed in the rootfs: an SSH server, and what the
// bootstrap would otherwise install (the VMs have no route to a mirror).
var Packages = []string{
	"openssh-server", "sudo", "podman", "runc", "btrfs-progs", "restic", "iproute2", "procps",
}

// recipe changes whenever the way the rootfs is made changes, so that a
// cached rootfs from an older recipe is not reused.
const recipe = "v1"

// CacheDir holds built rootfs trees between test runs.
var CacheDir = "/var/cache/cocalc-hosts-test"

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, chroot and mounts")
	}
}

// Rootfs returns the cached rootfs, building it first if needed. Test
// processes running at once (go test runs packages in parallel) build it
// once: the build holds an exclusive lock on a file in CacheDir.
func Rootfs(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	for _, tool := range []string{"mmdebstrap", "ip", "unshare", "nsenter", "pivot_root", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing; run scripts/install-deps.sh", tool)
		}
	}
	h := sha256.Sum256([]byte(recipe + "\x00bookworm\x00minbase\x00" + strings.Join(Packages, ",")))
	dir := filepath.Join(CacheDir, "rootfs-"+hex.EncodeToString(h[:8]))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, filepath.Join(CacheDir, "rootfs.lock"))
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir // another process built it while we waited
	}
	tmp := dir + ".building"
	os.RemoveAll(tmp)
	start := time.Now()
	args := []string{"--variant=minbase", "--include=" + strings.Join(Packages, ","), "bookworm", tmp}
	args = append(args, mirrors()...)
	out, err := exec.Command("mmdebstrap", args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("mmdebstrap %s: %v\n%s", strings.Join(args, " "), err, tail(out, 30))
	}
	// Every VM gets its own host key; the ones the package made would be
	// shared by all of them.
	keys, _ := filepath.Glob(filepath.Join(tmp, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("built test rootfs %s in %s", dir, time.Since(start).Round(time.Second))
	return dir
}

// mirrors are this machine's apt sources, which are known to be reachable.
func mirrors() []string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "debian") {
			return []string{f}
		}
	}
	return []string{"http://deb.debian.org/debian"}
}

func lockFile(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() }
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Options tune a VM.
type Options struct {
	// RootKeys are authorized_keys lines for root (the VM's own admin key
	// is always authorized).
	RootKeys []string
}

// VM is one test machine.
type VM struct {
	t testing.TB
	// Name is the VM's hostname and network namespace.
	Name string
	// Addr is the VM's IPv4 address; HostAddr is this machine's end.
	Addr, HostAddr string
	// Upper is the VM's disk: the overlay's upper layer, as seen from
	// this machine. Files written here before Boot appear in the VM.
	Upper string

	rootfs, work, merged string
	veth                 string
	adminKey             ssh.Signer
	hostKey              ssh.Signer

	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
	clients map[bool]*ssh.Client
	logMu   sync.Mutex
	log     bytes.Buffer
}

var (
	addrMu sync.Mutex
)

// New makes a VM and boots it. It is removed when the test ends.
func New(t testing.TB, o Options) *VM {
	t.Helper()
	rootfs := Rootfs(t)
	dir := t.TempDir()
	vm := &VM{t: t, rootfs: rootfs, Upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work"),
		merged: filepath.Join(dir, "root"), clients: map[bool]*ssh.Client{}}
	for _, d := range []string{vm.Upper, vm.work, vm.merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if vm.adminKey, err = ssh.NewSignerFromKey(priv); err != nil {
		t.Fatal(err)
	}
	vm.allocateNetwork(t)
	t.Cleanup(vm.destroy)
	vm.SetHostKey(t, nil)
	keys := append([]string{string(ssh.MarshalAuthorizedKey(vm.adminKey.PublicKey()))}, o.RootKeys...)
	vm.WriteFile(t, "/root/.ssh/authorized_keys", strings.Join(trimAll(keys), "\n")+"\n", 0o600)
	vm.WriteFile(t, "/etc/ssh/sshd_config_test", vm.sshdConfig(), 0o644)
	// As on a real machine, the hostname resolves (sudo complains otherwise).
	vm.WriteFile(t, "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 "+vm.Name+"\n", 0o644)
	vm.Boot(t)
	return vm
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// allocateNetwork picks a free /30 in 10.250.0.0/16 and makes the
// namespace and veth pair. The check and the creation happen under a
// machine-wide lock, so parallel test processes never pick the same one;
// namespaces left by killed test processes are removed first.
func (vm *VM) allocateNetwork(t testing.TB) {
	t.Helper()
	addrMu.Lock()
	defer addrMu.Unlock()
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, filepath.Join(CacheDir, "net.lock"))
	defer unlock()
	removeStaleNamespaces()
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	used := string(out)
	for range 1000 {
		block := 1 + mrand.IntN(16383) // /30 number; 0 is never used
		a, b := block*4/256, block*4%256
		host := fmt.Sprintf("10.250.%d.%d", a, b+1)
		if strings.Contains(used, " "+host+"/") {
			continue
		}
		vm.HostAddr, vm.Addr = host, fmt.Sprintf("10.250.%d.%d", a, b+2)
		vm.Name = fmt.Sprintf("chvm-%d-%x", os.Getpid(), block)
		vm.veth = fmt.Sprintf("chv%x", block)
		break
	}
	if vm.Addr == "" {
		t.Fatal("no free /30 in 10.250.0.0/16")
	}
	cmds := [][]string{
		{"ip", "netns", "add", vm.Name},
		{"ip", "link", "add", vm.veth, "type", "veth", "peer", "name", "eth0", "netns", vm.Name},
		{"ip", "addr", "add", vm.HostAddr + "/30", "dev", vm.veth},
		{"ip", "link", "set", vm.veth, "up"},
		{"ip", "-n", vm.Name, "addr", "add", vm.Addr + "/30", "dev", "eth0"},
		{"ip", "-n", vm.Name, "link", "set", "lo", "up"},
		{"ip", "-n", vm.Name, "link", "set", "eth0", "up"},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			vm.removeNetwork()
			t.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
}

// removeStaleNamespaces deletes VM namespaces whose test process is gone
// (killed before its cleanup ran).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "chvm-") {
			continue
		}
		parts := strings.Split(f[0], "-")
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue
		}
		// Processes still in it (an orphaned VM) go first.
		if pids, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if n, err := strconv.Atoi(p); err == nil {
					syscall.Kill(n, syscall.SIGKILL) //nolint:errcheck
				}
			}
		}
		exec.Command("ip", "netns", "del", f[0]).Run()          //nolint:errcheck
		exec.Command("ip", "link", "del", "chv"+parts[2]).Run() //nolint:errcheck
	}
}

func (vm *VM) removeNetwork() {
	exec.Command("ip", "netns", "del", vm.Name).Run() //nolint:errcheck // may not exist
	exec.Command("ip", "link", "del", vm.veth).Run()  //nolint:errcheck // gone with the namespace
}

// WriteFile writes a file onto the VM's disk (through the upper layer;
// use it while the VM is off, or for files nothing in the VM has open).
func (vm *VM) WriteFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(vm.Upper, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// SetHostKey gives the VM a new SSH host key (a reinstalled machine); nil
// makes one. It takes effect at the next Boot.
func (vm *VM) SetHostKey(t testing.TB, key ed25519.PrivateKey) {
	t.Helper()
	if key == nil {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	if vm.hostKey, err = ssh.NewSignerFromKey(key); err != nil {
		t.Fatal(err)
	}
	vm.WriteFile(t, "/etc/ssh/ssh_host_ed25519_key_test", string(pem.EncodeToMemory(block)), 0o600)
}

// HostKey is the VM's current SSH host public key.
func (vm *VM) HostKey() ssh.PublicKey { return vm.hostKey.PublicKey() }

func (vm *VM) sshdConfig() string {
	return `ListenAddress ` + vm.Addr + `
HostKey /etc/ssh/ssh_host_ed25519_key_test
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys
AllowStreamLocalForwarding yes
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
`
}

// Boot starts the VM: mounts its disk and runs sshd as the init of a new
// PID namespace, then waits for SSH to answer.
func (vm *VM) Boot(t testing.TB) {
	t.Helper()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd != nil {
		t.Fatalf("VM %s is already running", vm.Name)
	}
	cmd := vm.command("exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config_test")
	cmd.Stdout, cmd.Stderr = logWriter{vm}, logWriter{vm}
	if err := cmd.Start(); err != nil {
		t.Fatalf("boot %s: %v", vm.Name, err)
	}
	vm.cmd = cmd
	vm.waitErr = make(chan error, 1)
	go func() { vm.waitErr <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(vm.Addr, "22"), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case werr := <-vm.waitErr:
			vm.cmd = nil
			t.Fatalf("VM %s exited while booting: %v\n%s", vm.Name, werr, vm.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %s: sshd did not answer within 20s: %v\n%s", vm.Name, err, vm.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// command runs script as root inside the VM: in its network namespace, as
// the init of a PID namespace of its own, in a mount namespace whose root
// is the VM's disk. Every process the script leaves behind dies with it,
// and nothing it mounts, starts or listens on is visible to this machine.
func (vm *VM) command(script string) *exec.Cmd {
	m := vm.merged
	full := strings.Join([]string{
		"set -e",
		"hostname " + vm.Name,
		fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s", vm.rootfs, vm.Upper, vm.work, m),
		"mount -t proc proc " + m + "/proc",
		"mount --rbind /sys " + m + "/sys",
		"mount --rbind /dev " + m + "/dev",
		"mount -t tmpfs -o mode=755 tmpfs " + m + "/run",
		"mkdir -p -m 755 " + m + "/run/sshd",
		// pivot_root and drop the old root, not chroot: a chroot keeps a
		// copy of every host mount alive in this namespace, so a btrfs
		// pool another test mounted meanwhile would stay busy (its loop
		// device attached) until the VM shuts down.
		"cd " + m,
		"pivot_root . .",
		"umount -l .",
		"cd /",
		script,
	}, "\n")
	// nsenter, not `ip netns exec`: the latter makes a mount namespace of
	// its own, a full copy of the host's mounts, that unshare's parent
	// process would keep for the VM's lifetime. --kill-child: if this
	// process dies, so does the VM's init, and with it every process in
	// the VM.
	cmd := exec.Command("nsenter", "--net=/run/netns/"+vm.Name, "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
		"--propagation", "private", "--", "/bin/sh", "-c", full)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// RunOff runs a shell script as root on the VM's disk while the VM is
// off, as an image's first-boot tooling does (cloud-init, GCE's guest
// environment), and returns its combined output. It is confined like the
// booted VM (see command): a daemon the script starts, such as the
// `service ssh restart` of a startup script, ends when the script does,
// and never listens on this machine's network.
func (vm *VM) RunOff(t testing.TB, script string) string {
	t.Helper()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.cmd != nil {
		t.Fatalf("VM %s is running; RunOff needs it off", vm.Name)
	}
	// sh -c: the script runs as a child of the PID namespace's init, so
	// that the init (the shell above) outlives it and its exit ends every
	// process the script left running.
	cmd := vm.command(`sh -c "$0"; exit $?`)
	cmd.Args = append(cmd.Args, script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in VM %s (off): %v\n%s", vm.Name, err, out)
	}
	return string(out)
}

type logWriter struct{ vm *VM }

func (w logWriter) Write(p []byte) (int, error) {
	w.vm.logMu.Lock()
	defer w.vm.logMu.Unlock()
	return w.vm.log.Write(p)
}

func (vm *VM) logText() string {
	vm.logMu.Lock()
	defer vm.logMu.Unlock()
	return vm.log.String()
}

// PowerOff kills every process of the VM at once, as pulling the plug
// would; its disk (the upper layer) stays for the next Boot.
func (vm *VM) PowerOff(t testing.TB) {
	t.Helper()
	vm.mu.Lock()
	cmd, waitErr := vm.cmd, vm.waitErr
	vm.cmd = nil
	for k, c := range vm.clients {
		c.Close()
		delete(vm.clients, k)
	}
	vm.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
	// Its mounts (the overlay, a pool mounted inside) live only in its
	// mount namespace, which goes away with its last process.
	select {
	case <-waitErr:
	case <-time.After(10 * time.Second):
		t.Errorf("VM %s did not stop", vm.Name)
	}
}

// Log is sshd's output so far, for failure messages.
func (vm *VM) Log() string { return vm.logText() }

func (vm *VM) destroy() {
	vm.PowerOff(vm.t)
	vm.removeNetwork()
}

// Exec runs a shell script as root in the VM, through its own admin key,
// and returns its combined output.
func (vm *VM) Exec(ctx context.Context, script string) (string, error) {
	s, err := vm.session(ctx)
	if err != nil {
		return "", err
	}
	defer s.Close()
	var out lockedBuffer
	s.Stdout, s.Stderr = &out, &out
	if err := s.Start(script); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Close()
		<-done
		return out.String(), ctx.Err()
	}
	return out.String(), err
}

// lockedBuffer is written by the stdout and stderr copiers at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// session opens a session on the admin connection, dialling it again if
// it died (after a reboot, or a test that killed sessions).
func (vm *VM) session(ctx context.Context) (*ssh.Session, error) {
	for attempt := 0; ; attempt++ {
		c, err := vm.client(ctx)
		if err != nil {
			return nil, err
		}
		s, err := c.NewSession()
		if err == nil {
			return s, nil
		}
		vm.mu.Lock()
		if vm.clients[true] == c {
			delete(vm.clients, true)
		}
		vm.mu.Unlock()
		c.Close()
		if attempt == 1 {
			return nil, err
		}
	}
}

// MustExec is Exec that fails the test on error.
func (vm *VM) MustExec(t testing.TB, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := vm.Exec(ctx, script)
	if err != nil {
		t.Fatalf("in VM %s: %s: %v\n%s", vm.Name, script, err, out)
	}
	return out
}

func (vm *VM) client(ctx context.Context) (*ssh.Client, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if c := vm.clients[true]; c != nil {
		return c, nil
	}
	if vm.cmd == nil {
		return nil, errors.New("VM " + vm.Name + " is off")
	}
	want := vm.hostKey.PublicKey()
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(vm.adminKey)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), want.Marshal()) {
				return errors.New("unexpected host key")
			}
			return nil
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(vm.Addr, "22"))
	if err != nil {
		return nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, vm.Addr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := ssh.NewClient(sc, chans, reqs)
	vm.clients[true] = c
	return c, nil
}

// AddUser makes a login user with the given authorized keys, allowed to
// use sudo without a password when sudo is true.
func (vm *VM) AddUser(t testing.TB, name string, sudo bool, keys ...string) {
	t.Helper()
	script := fmt.Sprintf(`set -e
useradd -m -s /bin/bash %[1]s
# UsePAM is off: a locked password ("!") would refuse key logins too.
usermod -p '*' %[1]s
mkdir -p /home/%[1]s/.ssh
cat > /home/%[1]s/.ssh/authorized_keys <<'KEYS'
%[2]s
KEYS
chmod 700 /home/%[1]s/.ssh; chmod 600 /home/%[1]s/.ssh/authorized_keys
chown -R %[1]s: /home/%[1]s/.ssh
`, name, strings.Join(trimAll(keys), "\n"))
	if sudo {
		script += fmt.Sprintf("echo '%[1]s ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/%[1]s\nchmod 440 /etc/sudoers.d/%[1]s\n", name)
	}
	vm.MustExec(t, script)
}

// LoopDevice makes a sparse file of sizeMB on this machine, attaches it
// to a loop device (a data disk the VM sees through the shared /dev) and
// detaches it when the test ends. mkfs, if not empty, formats it first
// (e.g. "mkfs.ext4 -q").
func LoopDevice(t testing.TB, sizeMB int, mkfs string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "disk.img")
	if err := os.Truncate(mustCreate(t, f), int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	if mkfs != "" {
		args := append(strings.Fields(mkfs), f)
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", mkfs, err, out)
		}
	}
	out, err := exec.Command("losetup", "--find", "--show", f).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		// The VM's mount of it is gone with the VM; detaching may race
		// with the kernel letting go of the filesystem.
		for range 50 {
			if exec.Command("losetup", "-d", dev).Run() == nil {
				return
			}
			if _, err := os.Stat("/sys/block/" + filepath.Base(dev) + "/loop/backing_file"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("could not detach %s", dev)
	})
	return dev
}

func mustCreate(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// AttachByID makes /dev/disk/by-id/NAME point at dev, as udev does for a
// cloud's disk, until the test ends. The name is the same for every VM
// of a cloud (GCE calls a data disk google-DEVICE_NAME) and /dev is this
// machine's, so tests in other processes wait for it; a link left by a
// killed test run is replaced.
func AttachByID(t testing.TB, name, dev string) {
	t.Helper()
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, filepath.Join(CacheDir, "by-id-"+name+".lock"))
	var made []string
	for _, d := range []string{"/dev/disk", "/dev/disk/by-id"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			if err := os.Mkdir(d, 0o755); err != nil {
				unlock()
				t.Fatal(err)
			}
			made = append(made, d)
		}
	}
	link := "/dev/disk/by-id/" + name
	os.Remove(link) // stale: whoever made it no longer holds the lock
	if err := os.Symlink(dev, link); err != nil {
		unlock()
		t.Fatalf("attach disk %s: %v", name, err)
	}
	t.Cleanup(func() {
		os.Remove(link)
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i]) // only if empty: another test may use it
		}
		unlock()
	})
}

// SetLink takes the VM's network link down (as a cable pulled: nothing
// reaches it and it reaches nothing) or brings it back up. Connections
// that were open resume when it comes back, as TCP does.
func (vm *VM) SetLink(t testing.TB, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", vm.veth, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s: %v: %s", vm.veth, state, err, out)
	}
}

// Cable joins two VMs as two machines on one network: a veth pair
// between their namespaces with a route over it to each other's address.
// Their traffic to each other never crosses this machine (which cannot
// see the cable), and goes away with the VMs.
type Cable struct {
	a, b *VM
}

// cableDev is the cable's end in each VM.
const cableDev = "cable0"

// Connect lays a cable between VMs a and b.
func Connect(t testing.TB, a, b *VM) *Cable {
	t.Helper()
	c := &Cable{a: a, b: b}
	if out, err := exec.Command("ip", "link", "add", cableDev, "netns", a.Name, "type", "veth", "peer", "name", cableDev, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("cable between %s and %s: %v: %s", a.Name, b.Name, err, out)
	}
	c.Set(t, true)
	return c
}

// Set plugs the cable in (up) or pulls it (down: packets between the VMs
// are lost; open connections stall, as on a real network, until a side
// gives up or the cable is back).
func (c *Cable) Set(t testing.TB, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	for _, e := range []struct{ vm, peer *VM }{{c.a, c.b}, {c.b, c.a}} {
		cmds := [][]string{{"ip", "-n", e.vm.Name, "link", "set", cableDev, state}}
		if up {
			// A link going down takes its routes with it.
			cmds = append(cmds, []string{"ip", "-n", e.vm.Name, "route", "replace", e.peer.Addr + "/32", "dev", cableDev, "src", e.vm.Addr})
		}
		for _, cmd := range cmds {
			if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(cmd, " "), err, out)
			}
		}
	}
}
