// Package sshboot is the bootstrap runner: it turns a machine reachable
// over SSH into a project host, the same way for every provider. It
// waits for SSH while the machine boots, checks the OS, architecture and
// sudo, uploads the agent binary (this program when the platform matches,
// else a checksummed release artifact), the agent's config and secrets
// (root-owned 0600 files; never environment variables or argv) and the
// scripts of package bootstrap, runs the bootstrap script as root, and
// waits until the agent answers on its unix socket, reached through the
// SSH connection. Every line of output goes into the stored boot log of
// the run and to the caller's progress.
package sshboot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/bootstrap"
	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/fleet"
	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/sshpool"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Bootstrapper implements hosts.Bootstrapper over an SSH pool.
type Bootstrapper struct {
	Pool  *sshpool.Pool
	Store store.BootStore
	// Fleet returns the fleet key (made on first use).
	Fleet func() (*fleet.Identity, error)
	Agent *AgentSource
	// Secrets returns the secrets every host gets, by file name; they
	// land in /etc/cocalc-hosts/secrets/NAME (root, 0600). Nil: none.
	Secrets func(ctx context.Context) (map[string][]byte, error)
	// SSHWait bounds waiting for SSH to answer (a VM still booting).
	SSHWait time.Duration
	// AgentWait bounds waiting for the agent to answer after the script.
	AgentWait time.Duration
	Now       func() time.Time
	// IdleCheckInterval and SnapshotInterval go into every host's agent
	// config (Go durations; empty: the agent's defaults).
	IdleCheckInterval string
	SnapshotInterval  string
	// Provider returns the provider named by a host. It decides whether
	// the host's machine may power itself off when idle; nil means never.
	Provider func(ctx context.Context, name string) (provider.Provider, error)
	// Ingress is where the agent's ingress listens (ports 0: off).
	Ingress Ingress
	// AccessList returns the access list a host starts with, written into
	// its agent config (nil: none; the control plane pushes one later).
	AccessList func(ctx context.Context, h model.Host) (*agentapi.AccessList, error)
}

// Ingress are the bootstrapped agents' ingress settings.
type Ingress struct {
	HTTPSPort  int
	SSHPort    int
	SessionTTL string
}

// agentIngress is h's ingress config: every address, and a certificate
// for the names the host is known by.
func (in Ingress) agentIngress(h model.Host) agentapi.IngressConfig {
	c := agentapi.IngressConfig{SessionTTL: in.SessionTTL}
	if in.SSHPort > 0 {
		c.SSHAddr = ":" + strconv.Itoa(in.SSHPort)
	}
	if in.HTTPSPort <= 0 {
		return c
	}
	c.HTTPSAddr = ":" + strconv.Itoa(in.HTTPSPort)
	var names []string
	for _, n := range []string{h.Runtime.DNSName, h.Runtime.PublicIP, h.Runtime.SSHHost, h.Runtime.PrivateIP} {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	c.TLSNames = strings.Join(names, ",")
	return c
}

var _ hosts.Bootstrapper = (*Bootstrapper)(nil)

// New returns a bootstrapper with default waits.
func New(pool *sshpool.Pool, st store.BootStore, fleetKey func() (*fleet.Identity, error), agentSrc *AgentSource) *Bootstrapper {
	return &Bootstrapper{Pool: pool, Store: st, Fleet: fleetKey, Agent: agentSrc,
		SSHWait: 5 * time.Minute, AgentWait: time.Minute, Now: time.Now}
}

// StorePins keeps the pool's pinned host keys and contacts in the store.
type StorePins struct {
	Store store.BootStore
	Now   func() time.Time
}

func (p StorePins) Pinned(ctx context.Context, hostID string) (string, bool, error) {
	pin, err := p.Store.GetHostKey(ctx, hostID)
	if errkind.Is(err, errkind.NotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return pin.PublicKey, true, nil
}

func (p StorePins) PinFirst(ctx context.Context, hostID, key string) (string, error) {
	pin, err := p.Store.PinHostKey(ctx, store.HostKeyPin{HostID: hostID, PublicKey: key, Source: "first_contact", PinnedAt: p.now()}, false)
	return pin.PublicKey, err
}

func (p StorePins) Contact(ctx context.Context, hostID string, at time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p.Store.TouchHostContact(ctx, hostID, at) //nolint:errcheck // health bookkeeping must not fail real work
}

func (p StorePins) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Target is where h is reached over SSH.
func Target(h model.Host) sshpool.Target {
	return sshpool.Target{HostID: h.ID, Name: h.Name, Host: h.Runtime.SSHHost, Port: h.Runtime.SSHPort, User: h.Runtime.SSHUser, Reverse: h.Spec.Reverse}
}

// relay joins an SSH session to the agent's socket for login users who
// cannot open it themselves (it is root's, mode 0600).
var relay = []string{bootstrap.AgentBinary, "agent-relay", bootstrap.AgentSocket}

// Access returns the fleet public key and, when the provider installs it,
// the host key of h, pinned now. It is called for every new VM of h.
func (b *Bootstrapper) Access(ctx context.Context, h model.Host, injectHostKey bool) (string, *provider.HostKey, error) {
	id, err := b.Fleet()
	if err != nil {
		return "", nil, err
	}
	if !injectHostKey {
		// A new VM has a new host key, learned on first contact; the key
		// of a VM this host had before (deleted keeping its disk) must
		// not make the new one look like an impostor.
		b.Pool.Forget(Target(h))
		if err := b.Store.DeleteHostKey(ctx, h.ID); err != nil {
			return "", nil, err
		}
		return id.AuthorizedKey(), nil, nil
	}
	hk, err := id.HostKey(h.ID)
	if err != nil {
		return "", nil, err
	}
	if _, err := b.Store.PinHostKey(ctx, store.HostKeyPin{HostID: h.ID, PublicKey: hk.Public, Source: "generated", PinnedAt: b.Now()}, true); err != nil {
		return "", nil, err
	}
	return id.AuthorizedKey(), &hk, nil
}

// Forget drops h's connection and pinned host key.
func (b *Bootstrapper) Forget(ctx context.Context, h model.Host) error {
	b.Pool.Forget(Target(h))
	return b.Store.DeleteHostKey(ctx, h.ID)
}

// AgentClient reaches h's agent through the host's SSH connection.
func (b *Bootstrapper) AgentClient(_ context.Context, h model.Host) (*agentapi.Client, error) {
	t := Target(h)
	if t.Host == "" || t.User == "" {
		return nil, fmt.Errorf("host %s has no SSH endpoint yet", h.Name)
	}
	return agentapi.NewClientDialer(func(ctx context.Context) (net.Conn, error) {
		return b.Pool.DialUnix(ctx, t, bootstrap.AgentSocket, relay)
	}), nil
}

// Bootstrap makes h a project host; see the package comment.
func (b *Bootstrapper) Bootstrap(ctx context.Context, h model.Host, jobID string, progress func(string)) (hosts.BootResult, error) {
	return b.do(ctx, h, jobID, "bootstrap", progress)
}

// Upgrade installs this program's agent on h and restarts it (also when
// the binary did not change).
func (b *Bootstrapper) Upgrade(ctx context.Context, h model.Host, jobID string, progress func(string)) (hosts.BootResult, error) {
	return b.do(ctx, h, jobID, "upgrade", progress)
}

func (b *Bootstrapper) do(ctx context.Context, h model.Host, jobID, kind string, progress func(string)) (res hosts.BootResult, err error) {
	r, err := b.startRun(ctx, h, jobID, kind, progress)
	if err != nil {
		return res, err
	}
	defer func() { err = r.finish(ctx, err) }()
	t := Target(h)
	r.step("connecting to %s", t)
	if _, err := b.Pool.Wait(ctx, t, b.SSHWait, r.line); err != nil {
		return res, err
	}
	f, err := b.preflight(ctx, r, t, h)
	if err != nil {
		return res, err
	}
	bin, err := b.Agent.For(ctx, f.platform)
	if err != nil {
		return res, err
	}
	files, id, secretNames, err := b.files(ctx, h)
	if err != nil {
		return res, err
	}
	var before *agentapi.Status
	if kind == "upgrade" {
		if st, err := b.status(ctx, h, 10*time.Second); err == nil {
			before = &st
		}
	}
	if f.agentSHA256 == bin.SHA256 {
		r.line(fmt.Sprintf("the agent binary is up to date (sha256 %s)", short(bin.SHA256)))
	} else if err := b.installAgent(ctx, r, t, f, bin); err != nil {
		return res, err
	}
	if f.marker == id {
		r.line("settings and scripts are up to date")
	} else {
		r.step("uploading the agent's config, secrets and the bootstrap scripts")
		if err := b.installFiles(ctx, r, t, files, secretNames); err != nil {
			return res, err
		}
	}
	r.step("running the bootstrap script as root")
	if err := b.Pool.Run(ctx, t, sshpool.RootCommand(t, "/bin/sh", path.Join(bootstrap.ScriptDir, "bootstrap.sh")), nil, r.line); err != nil {
		return res, r.scriptError("the bootstrap script", err)
	}
	if before != nil {
		st, err := b.status(ctx, h, 10*time.Second)
		if err == nil && st.PID == before.PID && st.StartedAt.Equal(before.StartedAt) {
			r.step("restarting the agent")
			if err := b.Pool.Run(ctx, t, sshpool.RootCommand(t, bootstrap.AgentCtlPath, "restart"), nil, r.line); err != nil {
				return res, r.scriptError("agentctl restart", err)
			}
		}
	}
	r.step("checking that the agent answers")
	st, err := b.waitAgent(ctx, r, h)
	if err != nil {
		return res, err
	}
	if before != nil && st.PID == before.PID && st.StartedAt.Equal(before.StartedAt) {
		return res, r.fail("the agent did not restart: it still runs as pid %d since %s", st.PID, st.StartedAt.Format(time.RFC3339))
	}
	r.line(fmt.Sprintf("agent %s answers (pid %d, %s pool at %s)", st.Version, st.PID, st.Storage.Kind, st.Storage.Path))
	pin, err := b.Store.GetHostKey(ctx, h.ID)
	if err != nil {
		return res, err
	}
	r.step("host ready")
	return hosts.BootResult{AgentVersion: st.Version, AgentSHA256: bin.SHA256, Platform: f.platform, HostKey: pin.PublicKey,
		AgentPID: st.PID, AgentStartedAt: st.StartedAt}, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// facts are what preflight learned about the host.
type facts struct {
	platform     string // GOOS/GOARCH
	distro       string
	init         string
	agentSHA256  string
	marker       string
	gzip         bool
	binAvailKB   int64
	stateAvailKB int64
}

var platforms = map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

// preflight checks the OS, the architecture, sudo and the distribution
// before anything is changed on the host.
func (b *Bootstrapper) preflight(ctx context.Context, r *run, t sshpool.Target, h model.Host) (facts, error) {
	var f facts
	out, err := b.Pool.Output(ctx, t, "uname -sm", nil)
	if lost := r.connectionLost(err); lost != nil {
		return f, lost
	}
	if err != nil {
		return f, r.fail("cannot run uname on %s: %v: %s", t, err, strings.TrimSpace(out))
	}
	fields := strings.Fields(lastLine(out))
	if len(fields) != 2 {
		return f, r.fail("unexpected answer to uname -sm on %s: %q", t, strings.TrimSpace(out))
	}
	if fields[0] != "Linux" {
		return f, r.fail("%s runs %s, and project hosts run Linux (Debian 11+ or Ubuntu 22.04+); use a Linux machine", t.Host, fields[0])
	}
	arch, ok := platforms[fields[1]]
	if !ok {
		return f, r.fail("%s is %s, and project hosts are x86_64 or aarch64", t.Host, fields[1])
	}
	f.platform = "linux/" + arch
	if !t.IsRoot() {
		out, err := b.Pool.Output(ctx, t, "sudo -n true", nil)
		if lost := r.connectionLost(err); lost != nil {
			return f, lost
		}
		if err != nil {
			var ee *sshpool.ExitError
			if errors.As(err, &ee) && (ee.Status == 127 || strings.Contains(out, "not found")) {
				return f, r.fail("sudo is not installed on %s and %s is not root; log in as root (--address root@%s) or install sudo and let %s use it without a password",
					t.Host, t.User, t.Host, t.User)
			}
			return f, r.fail("user %s cannot use sudo without a password on %s (sudo said: %s); as root there, run: echo '%s ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/cocalc-hosts, or log in as root",
				t.User, t.Host, strings.TrimSpace(lastLine(out)), t.User)
		}
	}
	var lines []string
	err = b.Pool.Script(ctx, t, "preflight", bootstrap.Preflight, []string{h.ID}, nil, func(l string) { lines = append(lines, l) })
	said, errLine, told := parsePreflight(lines)
	if errLine != "" {
		r.line(errLine)
		return f, r.fail("%s", strings.TrimPrefix(errLine, "ERROR: "))
	}
	if err != nil {
		for _, l := range lines {
			r.line(l)
		}
		return f, r.scriptError("the preflight check", err)
	}
	said.platform = f.platform
	f = said
	if !told {
		return f, r.fail("the preflight check on %s printed no facts: %q", t, strings.Join(lines, " | "))
	}
	r.line(fmt.Sprintf("%s, %s, init: %s", f.platform, f.distro, f.init))
	return f, nil
}

// parsePreflight reads the preflight script's output: KEY=value facts,
// or the first "ERROR: " line, which says why the machine cannot be a
// host. told is false when the script printed no facts at all.
func parsePreflight(lines []string) (f facts, errLine string, told bool) {
	kv := map[string]string{}
	for _, l := range lines {
		if strings.HasPrefix(l, "ERROR: ") {
			return f, l, false
		}
		if k, v, ok := strings.Cut(l, "="); ok && strings.ToUpper(k) == k {
			kv[k] = v
		}
	}
	f.distro = strings.TrimSpace(kv["DISTRO"] + " " + kv["DISTRO_VERSION"])
	f.init, f.agentSHA256, f.marker, f.gzip = kv["INIT"], kv["AGENT_SHA256"], kv["MARKER"], kv["GZIP"] == "yes"
	f.binAvailKB, _ = strconv.ParseInt(kv["BIN_AVAIL_KB"], 10, 64)
	f.stateAvailKB, _ = strconv.ParseInt(kv["STATE_AVAIL_KB"], 10, 64)
	return f, "", kv["ARCH"] != ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// installAgent uploads bin to the host, if there is room.
func (b *Bootstrapper) installAgent(ctx context.Context, r *run, t sshpool.Target, f facts, bin Binary) error {
	needKB := bin.Size/1024 + bin.Size/1024/10 + 1024 // the binary, 10%, and 1 MiB to spare
	if f.binAvailKB < needKB {
		return r.fail("not enough space for the agent on %s: %s has %d MiB free and the agent needs %d MiB; free some space there and retry",
			t.Host, path.Dir(bootstrap.AgentBinary), f.binAvailKB/1024, needKB/1024)
	}
	r.step("uploading the agent (%d MiB, sha256 %s)", bin.Size>>20, short(bin.SHA256))
	args := []string{bootstrap.AgentBinary, bin.SHA256}
	src := bin.Path
	if f.gzip {
		// A Go binary gzips to under half its size: on real links the
		// upload takes half the time. Compressed once, kept for all hosts.
		gz, err := b.Agent.Gzipped(bin)
		if err != nil {
			return err
		}
		if gz != "" {
			src = gz
			args = append(args, "gzip")
		}
	}
	file, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	defer file.Close()
	err = b.Pool.Script(ctx, t, "install-agent", bootstrap.InstallAgent, args, file, r.line)
	if err != nil {
		return r.scriptError("uploading the agent", err)
	}
	return nil
}

func (b *Bootstrapper) installFiles(ctx context.Context, r *run, t sshpool.Target, files []file, secretNames []string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: int64(f.mode), Size: int64(len(f.data)),
			Typeflag: tar.TypeReg, ModTime: b.Now(), Uname: "root", Gname: "root"}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	args := append([]string{bootstrap.SecretsDir}, secretNames...)
	if err := b.Pool.Script(ctx, t, "install-files", bootstrap.InstallFiles, args, &buf, r.line); err != nil {
		return r.scriptError("installing the config files", err)
	}
	return nil
}

type file struct {
	path string
	mode uint32
	data []byte
}

// secretNameRE leaves the length (at most 64) to its caller: a counted
// repetition compiles into that many copies at start-up.
var secretNameRE = lazyre.New(`^[a-z0-9][a-z0-9_.-]*$`)

// Where a bootstrapped host keeps project data besides the projects: all
// on the pool. The podman store is the one bootstrap.sh writes into
// /etc/containers/storage.conf, with root's default tmpdir, so that the
// agent and a plain `podman` on the host see the same containers.
const (
	ImageCacheDir = bootstrap.Pool + "/.image-cache"
	PodmanRoot    = bootstrap.Pool + "/containers/storage"
	PodmanRunRoot = "/run/containers/storage"
	PodmanTmpDir  = "/run/libpod"
	// SelfStopCommand powers off a cloud VM whose idle policy says so.
	SelfStopCommand = "systemctl poweroff"
)

// agentConfig is the agent config of h. Projects keep running when the
// agent stops: an upgrade restarts it, and that must not stop projects.
func (b *Bootstrapper) agentConfig(ctx context.Context, h model.Host) (agentapi.Config, error) {
	cfg := agentapi.Config{HostID: h.ID, SocketPath: bootstrap.AgentSocket, PoolPath: bootstrap.Pool,
		StorageKind: agentapi.StorageBtrfs, LogPath: bootstrap.AgentLog,
		Podman:            agentapi.PodmanConfig{Root: PodmanRoot, RunRoot: PodmanRunRoot, TmpDir: PodmanTmpDir},
		ImageCacheDir:     ImageCacheDir,
		IdleCheckInterval: b.IdleCheckInterval,
		SnapshotInterval:  b.SnapshotInterval,
		Ingress:           b.Ingress.agentIngress(h),
	}
	switch how, err := b.idleStop(ctx, h); {
	case err != nil:
		return cfg, err
	case how == provider.StopReal:
		cfg.SelfStopCommand = SelfStopCommand
	case how == provider.StopHibernate:
		cfg.IdleStopByControlPlane = true
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("agent config for host %s: %w", h.Name, err)
	}
	return cfg, nil
}

// idleStop says how h stops when idle past its policy (see
// hosts.IdleStopKind).
func (b *Bootstrapper) idleStop(ctx context.Context, h model.Host) (provider.StopKind, error) {
	if b.Provider == nil {
		return provider.StopNone, nil
	}
	p, err := b.Provider(ctx, h.Provider)
	if err != nil {
		return provider.StopNone, fmt.Errorf("provider %s of host %s: %w", h.Provider, h.Name, err)
	}
	return hosts.IdleStopKind(p, h), nil
}

// files are what the host gets besides the binary, and the id of this
// set of settings (the bootstrap's done marker).
func (b *Bootstrapper) files(ctx context.Context, h model.Host) ([]file, string, []string, error) {
	cfg, err := b.agentConfig(ctx, h)
	if err != nil {
		return nil, "", nil, err
	}
	// The id covers the settings, not the access list of the moment: a
	// host whose settings did not change is not bootstrapped again.
	idJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, "", nil, err
	}
	if b.AccessList != nil {
		if cfg.Ingress.InitialAccess, err = b.AccessList(ctx, h); err != nil {
			return nil, "", nil, fmt.Errorf("access list for host %s: %w", h.Name, err)
		}
	}
	agentJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, "", nil, err
	}
	agentJSON = append(agentJSON, '\n')
	gpu := "auto"
	if h.Spec.GPUModel != "" || h.Spec.GPUCount > 0 {
		gpu = "yes"
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "# Bootstrap settings for host %s, written by cocalc-hosts.\n", h.Name)
	fmt.Fprintf(&conf, "HOST_ID=%s\n", sshpool.ShellQuote(h.ID))
	fmt.Fprintf(&conf, "DATA_DISK=%s\n", sshpool.ShellQuote(h.Runtime.DataDiskDevice))
	fmt.Fprintf(&conf, "POOL_SIZE_GB=%d\n", h.Spec.DiskGB)
	fmt.Fprintf(&conf, "GPU=%s\n", gpu)

	var secrets map[string][]byte
	if b.Secrets != nil {
		if secrets, err = b.Secrets(ctx); err != nil {
			return nil, "", nil, err
		}
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		if len(n) > 64 || !secretNameRE().MatchString(n) {
			return nil, "", nil, fmt.Errorf("secret name %q: use lowercase letters, digits, '.', '_' and '-'", n)
		}
		names = append(names, n)
	}
	sort.Strings(names)

	idh := sha256.New()
	fmt.Fprintf(idh, "%s\x00%s\x00%s\n\x00", bootstrap.Digest(), conf.String(), idJSON)
	for _, n := range names {
		sum := sha256.Sum256(secrets[n])
		fmt.Fprintf(idh, "%s=%x\x00", n, sum)
	}
	id := hex.EncodeToString(idh.Sum(nil))[:32]
	fmt.Fprintf(&conf, "BOOTSTRAP_ID=%s\n", id)

	files := []file{
		{bootstrap.BootstrapConf, 0o600, []byte(conf.String())},
		{bootstrap.AgentConfig, 0o600, agentJSON},
	}
	for n, s := range bootstrap.Files() {
		files = append(files, file{path.Join(bootstrap.ScriptDir, n), 0o600, []byte(s)})
	}
	for _, n := range names {
		files = append(files, file{path.Join(bootstrap.SecretsDir, n), 0o600, secrets[n]})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, id, names, nil
}

func (b *Bootstrapper) status(ctx context.Context, h model.Host, timeout time.Duration) (agentapi.Status, error) {
	c, err := b.AgentClient(ctx, h)
	if err != nil {
		return agentapi.Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Status(ctx)
}

// waitAgent polls the agent until it answers as h's agent, or AgentWait passes.
func (b *Bootstrapper) waitAgent(ctx context.Context, r *run, h model.Host) (agentapi.Status, error) {
	deadline := b.Now().Add(b.AgentWait)
	delay := 100 * time.Millisecond
	for {
		st, err := b.status(ctx, h, 10*time.Second)
		if err == nil {
			if st.HostID != h.ID {
				return st, r.fail("the agent on %s answers for host %s, not %s; the machine belongs to another host", h.Runtime.SSHHost, st.HostID, h.ID)
			}
			return st, nil
		}
		if !b.Now().Before(deadline) || ctx.Err() != nil {
			return st, r.fail("the agent on %s did not answer within %s: %v (its log is %s on the host)", h.Runtime.SSHHost, b.AgentWait, err, bootstrap.AgentLog)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// HostKeyChange is the result of a re-pin.
type HostKeyChange struct {
	Host    string `json:"host"`
	Old     string `json:"old_fingerprint,omitempty"`
	New     string `json:"new_fingerprint"`
	Changed bool   `json:"changed"`
}

// Repin records the host key h offers now as its pinned key. With a
// fingerprint, the offered key must have it: the way to re-pin safely is
// to read the fingerprint on the machine's console first.
func (b *Bootstrapper) Repin(ctx context.Context, h model.Host, fingerprint string) (HostKeyChange, error) {
	t := Target(h)
	key, err := b.Pool.HostKey(ctx, t)
	if err != nil {
		return HostKeyChange{}, err
	}
	offered := fleet.KeyString(key)
	ch := HostKeyChange{Host: h.Name, New: fleet.Fingerprint(offered)}
	if fingerprint != "" && fingerprint != ch.New && "SHA256:"+fingerprint != ch.New {
		return ch, errkind.Errorf(errkind.Invalid, "%s offers host key %s, not %s; nothing was re-pinned (check the fingerprint on the machine's console)", t, ch.New, fingerprint)
	}
	if old, err := b.Store.GetHostKey(ctx, h.ID); err == nil {
		ch.Old = fleet.Fingerprint(old.PublicKey)
	} else if !errkind.Is(err, errkind.NotFound) {
		return ch, err
	}
	ch.Changed = ch.Old != ch.New
	if _, err := b.Store.PinHostKey(ctx, store.HostKeyPin{HostID: h.ID, PublicKey: offered, Source: "repinned", PinnedAt: b.Now()}, true); err != nil {
		return ch, err
	}
	b.Pool.Forget(t)
	return ch, nil
}

// run is one bootstrap run: its boot log and its progress.
type run struct {
	b        *Bootstrapper
	id       string
	host     model.Host
	kind     string
	progress func(string)

	mu        sync.Mutex
	seq       int
	batch     []store.BootLine
	lastFlush time.Time
	tail      []string
	curStep   string // the current step ("==> NAME")
	failed    error  // set by fail: already explained
}

func (b *Bootstrapper) startRun(ctx context.Context, h model.Host, jobID, kind string, progress func(string)) (*run, error) {
	r := &run{b: b, id: uuid.NewString(), host: h, kind: kind, progress: progress, lastFlush: b.Now()}
	if err := b.Store.StartBootRun(ctx, store.BootRun{ID: r.id, HostID: h.ID, JobID: jobID, Kind: kind, StartedAt: b.Now()}); err != nil {
		return nil, err
	}
	return r, nil
}

const tailLines = 8

// line records one line of output.
func (r *run) line(l string) {
	r.mu.Lock()
	now := r.b.Now()
	r.batch = append(r.batch, store.BootLine{HostID: r.host.ID, RunID: r.id, Seq: r.seq, TS: now, Line: l})
	r.seq++
	if name, ok := strings.CutPrefix(l, "==> "); ok {
		r.curStep = name
	}
	r.tail = append(r.tail, l)
	if len(r.tail) > tailLines {
		r.tail = r.tail[1:]
	}
	flush := len(r.batch) >= 50 || now.Sub(r.lastFlush) > 500*time.Millisecond
	r.mu.Unlock()
	if r.progress != nil {
		r.progress(l)
	}
	if flush {
		r.flush(context.Background())
	}
}

func (r *run) step(format string, args ...any) { r.line("==> " + fmt.Sprintf(format, args...)) }

func (r *run) flush(ctx context.Context) {
	r.mu.Lock()
	batch := r.batch
	r.batch = nil
	r.lastFlush = r.b.Now()
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.b.Store.AppendBootLog(ctx, batch); err != nil && r.progress != nil {
		r.progress("warning: could not store boot log lines: " + err.Error())
	}
}

// fail is a failure that needs no retry: bad input or a host that cannot
// be a project host as it is. The message goes into the boot log.
func (r *run) fail(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	r.line("ERROR: " + msg)
	err := errkind.Errorf(errkind.Invalid, "bootstrap %s: %s", r.host.Name, msg)
	r.failed = err
	return err
}

// scriptError explains a remote script that failed: by its ERROR line
// and its last lines of output. A script that ran and failed is not
// retried (running it again gives the same answer until someone fixes
// the cause); a connection that died under it is.
// connectionLost is err, for the queue to retry, when the connection died
// under a command (transient); nil otherwise: a command that ran and
// failed says something about the host, which a retry would not change.
func (r *run) connectionLost(err error) error {
	if errkind.Is(err, errkind.Transient) {
		return fmt.Errorf("bootstrap %s: %w", r.host.Name, err)
	}
	return nil
}

func (r *run) scriptError(what string, err error) error {
	var ee *sshpool.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	r.mu.Lock()
	tail := append([]string(nil), r.tail...)
	step := r.curStep
	r.mu.Unlock()
	headline := fmt.Sprintf("%s failed (exit status %d)", what, ee.Status)
	for i := len(tail) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(tail[i], "ERROR: "); ok {
			headline = msg
			break
		}
	}
	if step != "" {
		headline = fmt.Sprintf("at step %q: %s", step, headline)
	}
	e := errkind.Errorf(errkind.Invalid, "bootstrap %s: %s; last lines of the boot log: %s; see `cocalc-hosts logs --boot %s`",
		r.host.Name, headline, strings.Join(tail, " | "), r.host.Name)
	r.failed = e
	return e
}

// finish stores the end of the run and returns err, with the boot log's
// last lines for failures not explained yet.
func (r *run) finish(ctx context.Context, err error) error {
	result, msg := store.BootDone, ""
	if err != nil {
		result, msg = store.BootFailed, err.Error()
		if r.failed == nil && !errors.Is(err, context.Canceled) {
			r.line("ERROR: " + msg)
		}
	}
	r.flush(ctx)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := r.b.Store.FinishBootRun(fctx, r.id, r.b.Now(), result, msg); ferr != nil && err == nil {
		return ferr
	}
	return err
}
