// Package podman runs project containers with the podman command line:
// one container per running project, with memory, CPU and process limits,
// the project's home and scratch mounted, labels that carry the project id
// (so that a restarted agent finds its containers again), and GPUs passed
// through CDI where the host has NVIDIA GPUs.
//
// Host-specific podman settings (runtime, cgroup manager, ulimits) are
// probed on the machine (Probe, Use); a containers.conf given as
// Config.ContainersConf overrides them.
package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// Labels on every project container.
const (
	LabelProject = "cocalc.project_id"
	LabelHost    = "cocalc.host_id"
	// LabelSpec holds the container's RunSpec limits as JSON, so that an
	// agent that restarts knows what each container was started with.
	LabelSpec = "cocalc.spec"
)

// ErrNotFound is a container or image that does not exist.
var ErrNotFound = errors.New("not found")

// ErrNoImage is a Start whose image is not in the local store (Start
// never pulls).
var ErrNoImage = fmt.Errorf("image %w", ErrNotFound)

// ErrNameInUse is a Start whose container name another container has
// (running or not).
var ErrNameInUse = errors.New("container name in use")

// Config says how to call podman (part of the agent's configuration).
type Config = agentapi.PodmanConfig

// Podman calls the podman command line.
type Podman struct {
	cfg Config
	rt  Runtime
	// OnFailure, when set, is told the subcommand (run, rm, ps, pull, …)
	// of each podman command that Run saw fail, other than one whose
	// container does not exist (an answer, not a failure). Set it before
	// the Podman is shared.
	OnFailure func(command string)

	// listing is `podman ps -a`, shared by the listings asked for at once.
	listing fresh[[]Container]
}

// New returns a Podman for cfg.
func New(cfg Config) (*Podman, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		cfg.Binary = "podman"
	}
	return &Podman{cfg: cfg}, nil
}

// GlobalArgs are the flags that select the store, the OCI runtime and
// the cgroup manager.
func (p *Podman) GlobalArgs() []string {
	args := runtimeArgs(p.rt.Runtime, p.rt.CgroupManager)
	if p.cfg.Root == "" {
		return args
	}
	return append(args, "--root", p.cfg.Root, "--runroot", p.cfg.RunRoot, "--tmpdir", p.cfg.TmpDir)
}

// Env is the environment podman runs with.
func (p *Podman) Env() []string {
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "CONTAINERS_CONF" || k == "LC_ALL" {
			continue
		}
		env = append(env, kv)
	}
	if p.cfg.ContainersConf != "" {
		env = append(env, "CONTAINERS_CONF="+p.cfg.ContainersConf)
	}
	return env
}

// Command returns a podman command with the store flags and environment
// set; the caller wires its input and output.
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.cfg.Binary, append(p.GlobalArgs(), args...)...)
	cmd.Env = p.Env()
	// conmon of an exec session writes an "oom" marker into its working
	// directory when the command is OOM-killed; keep that out of the
	// caller's directory.
	cmd.Dir = os.TempDir()
	if p.cfg.TmpDir != "" {
		cmd.Dir = p.cfg.TmpDir
		os.MkdirAll(p.cfg.TmpDir, 0o700) //nolint:errcheck // podman makes it too; a failure shows there
	}
	// A cancelled read ends with SIGTERM; commands that change a
	// container are not cancelled at all (see runToEnd).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Run runs podman and returns its stdout. Its error names the command
// and carries podman's message.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	cmd := p.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		// podman prefixes its messages with "Error: "; one is enough.
		msg = strings.TrimPrefix(msg, "Error: ")
		perr := &Error{Args: args, Err: err, Msg: msg}
		if p.OnFailure != nil && len(args) > 0 && !isAnswer(perr) {
			p.OnFailure(args[0])
		}
		return stdout.String(), perr
	}
	return stdout.String(), nil
}

// Error is a failed podman command.
type Error struct {
	Args []string
	Err  error
	Msg  string
}

func (e *Error) Error() string {
	a := strings.Join(e.Args, " ")
	if len(a) > 120 {
		a = a[:120] + "…"
	}
	if e.Msg != "" {
		return fmt.Sprintf("podman %s: %s", a, e.Msg)
	}
	return fmt.Sprintf("podman %s: %v", a, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Mount is a bind mount into a container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// RunSpec is one project container.
type RunSpec struct {
	Name     string            `json:"-"`
	Image    string            `json:"image"`
	Hostname string            `json:"hostname,omitempty"`
	Labels   map[string]string `json:"-"`
	// MemoryBytes limits memory and memory+swap alike: a project that
	// needs more is OOM-killed rather than pushed into swap.
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	CPUs        float64  `json:"cpus,omitempty"`
	PidsLimit   int      `json:"pids_limit,omitempty"`
	Mounts      []Mount  `json:"-"`
	User        string   `json:"-"`
	Workdir     string   `json:"-"`
	Env         []string `json:"-"`
	// GPUs passes all NVIDIA GPUs through CDI.
	GPUs    bool     `json:"gpus,omitempty"`
	Command []string `json:"-"`
}

// Args returns the arguments of `podman run` for s.
func (s RunSpec) Args() ([]string, error) {
	if s.Name == "" || s.Image == "" {
		return nil, errors.New("container needs a name and an image")
	}
	if s.MemoryBytes < 0 || s.CPUs < 0 || s.PidsLimit < 0 {
		return nil, errors.New("container limits must not be negative")
	}
	args := []string{"run", "-d", "--name", s.Name}
	if s.Hostname != "" {
		args = append(args, "--hostname", s.Hostname)
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--label", k+"="+s.Labels[k])
	}
	if s.MemoryBytes > 0 {
		m := strconv.FormatInt(s.MemoryBytes, 10)
		args = append(args, "--memory", m, "--memory-swap", m)
	}
	if s.CPUs > 0 {
		args = append(args, "--cpus", strconv.FormatFloat(s.CPUs, 'f', -1, 64))
	}
	if s.PidsLimit > 0 {
		args = append(args, "--pids-limit", strconv.Itoa(s.PidsLimit))
	}
	for _, m := range s.Mounts {
		if strings.ContainsAny(m.Source+m.Target, ",:") {
			return nil, fmt.Errorf("mount %s -> %s: paths with ',' or ':' cannot be bind-mounted", m.Source, m.Target)
		}
		opt := "type=bind,source=" + m.Source + ",target=" + m.Target
		if m.ReadOnly {
			opt += ",readonly=true"
		}
		args = append(args, "--mount", opt)
	}
	if s.User != "" {
		args = append(args, "--user", s.User)
	}
	if s.Workdir != "" {
		args = append(args, "--workdir", s.Workdir)
	}
	for _, e := range s.Env {
		args = append(args, "--env", e)
	}
	if s.GPUs {
		args = append(args, "--device", "nvidia.com/gpu=all")
	}
	// Processes in the project cannot gain privileges (setuid binaries).
	args = append(args, "--security-opt", "no-new-privileges")
	args = append(args, s.Image)
	return append(args, s.Command...), nil
}

// Start runs a container for s detached and returns its id: one podman
// command, which answers the questions a caller would otherwise ask
// first. It never pulls: an image not in the store fails with
// ErrNoImage, and a name another container has fails with ErrNameInUse;
// neither leaves a container behind. It runs to its end even when ctx is
// cancelled (runToEnd).
func (p *Podman) Start(ctx context.Context, s RunSpec) (string, error) {
	args, err := s.Args()
	if err != nil {
		return "", err
	}
	// Any --ulimit replaces podman's defaults: these are all of them.
	args = append(append([]string{args[0], "--pull", "never"}, p.ulimitArgs()...), args[1:]...)
	out, err := p.runToEnd(ctx, args...)
	switch {
	case err == nil:
		return strings.TrimSpace(out), nil
	case hasMsg(err, noImageMsgs...):
		return "", fmt.Errorf("%w: %w", ErrNoImage, err)
	case hasMsg(err, nameInUseMsgs...):
		return "", fmt.Errorf("%w: %w", ErrNameInUse, err)
	}
	return "", err
}

// changeTimeout bounds a container change that runs to its end: far
// longer than a healthy podman takes (well under a second), so only a
// podman stuck on a lock is ended.
const changeTimeout = 2 * time.Minute

// runToEnd runs a podman command that changes a container to its end,
// even when ctx is cancelled: podman 4 signalled while it sets a
// container up (SIGTERM too, which it seems to survive) leaves that
// container's network namespace and address behind for good, even
// after the container is removed.
func (p *Podman) runToEnd(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), changeTimeout)
	defer cancel()
	return p.Run(ctx, args...)
}

// What podman says when a command's answer is "no" rather than a failure
// (lower case).
var (
	noSuchMsgs    = []string{"no such container", "no container with name or id"}
	noImageMsgs   = []string{"image not known", "no such image"}
	nameInUseMsgs = []string{"is already in use"}
)

// Remove stops (SIGTERM, then SIGKILL after grace) and removes a
// container. A container that does not exist is not an error. It runs
// to its end even when ctx is cancelled (runToEnd).
func (p *Podman) Remove(ctx context.Context, name string, grace time.Duration) error {
	_, err := p.runToEnd(ctx, "rm", "-f", "-t", strconv.Itoa(int(grace.Seconds())), name)
	if err != nil && isNoSuch(err) {
		return nil
	}
	return err
}

func isNoSuch(err error) bool { return hasMsg(err, noSuchMsgs...) }

// isAnswer reports whether a failed podman command answered a question
// (no such container, no such image, name taken) rather than failed.
func isAnswer(err error) bool {
	return hasMsg(err, noSuchMsgs...) || hasMsg(err, noImageMsgs...) || hasMsg(err, nameInUseMsgs...)
}

// hasMsg reports whether err is a podman command whose message holds one
// of msgs.
func hasMsg(err error, msgs ...string) bool {
	var pe *Error
	if !errors.As(err, &pe) {
		return false
	}
	m := strings.ToLower(pe.Msg)
	for _, s := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// Container is what `podman ps` says about a container.
type Container struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Image     string            `json:"image"`
	State     string            `json:"state"`
	Labels    map[string]string `json:"labels"`
	StartedAt time.Time         `json:"started_at"`
	PID       int               `json:"pid"`
}

// Running reports whether the container runs.
func (c Container) Running() bool { return c.State == "running" }

// psEntry is one element of `podman ps --format json`.
type psEntry struct {
	ID        string            `json:"Id"`
	Names     []string          `json:"Names"`
	Image     string            `json:"Image"`
	State     string            `json:"State"`
	Labels    map[string]string `json:"Labels"`
	StartedAt int64             `json:"StartedAt"`
	PID       int               `json:"Pid"`
}

// List returns the containers (running or not) whose labels match every
// "key=value" (or "key": has the label) filter. Listings asked for at
// once share one `podman ps` that began after each was asked (fresh);
// the containers returned are shared with other callers: read only.
func (p *Podman) List(ctx context.Context, labels ...string) ([]Container, error) {
	all, err := p.listing.do(ctx, p.listAll)
	if err != nil {
		return nil, err
	}
	out := []Container{}
	for _, c := range all {
		if hasLabels(c, labels) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (p *Podman) listAll(ctx context.Context) ([]Container, error) {
	out, err := p.Run(ctx, "ps", "-a", "--format", "json")
	if err != nil {
		return nil, err
	}
	return parsePS(out)
}

// hasLabels reports whether c matches every filter of List.
func hasLabels(c Container, filters []string) bool {
	for _, f := range filters {
		k, v, withValue := strings.Cut(f, "=")
		got, ok := c.Labels[k]
		if !ok || (withValue && got != v) {
			return false
		}
	}
	return true
}

// parsePS reads `podman ps --format json`.
func parsePS(out string) ([]Container, error) {
	var entries []psEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		return nil, fmt.Errorf("podman ps: unexpected output: %w", err)
	}
	cs := make([]Container, 0, len(entries))
	for _, e := range entries {
		c := Container{ID: e.ID, Image: e.Image, State: e.State, Labels: e.Labels, PID: e.PID}
		if len(e.Names) > 0 {
			c.Name = e.Names[0]
		}
		if e.StartedAt > 0 {
			c.StartedAt = time.Unix(e.StartedAt, 0).UTC()
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// Get returns one container by name, or ErrNotFound.
func (p *Podman) Get(ctx context.Context, name string) (Container, error) {
	cs, err := p.List(ctx)
	if err != nil {
		return Container{}, err
	}
	for _, c := range cs {
		if c.Name == name {
			return c, nil
		}
	}
	return Container{}, fmt.Errorf("container %s: %w", name, ErrNotFound)
}

// ImageExists reports whether image is in the local store. It never
// contacts a registry.
func (p *Podman) ImageExists(ctx context.Context, image string) (bool, error) {
	cmd := p.Command(ctx, "image", "exists", image)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, fmt.Errorf("podman image exists %s: %v: %s", image, err, strings.TrimSpace(stderr.String()))
}

// Pull fetches image from its registry.
func (p *Podman) Pull(ctx context.Context, image string) error {
	_, err := p.Run(ctx, "pull", "-q", image)
	return err
}

// ExecOptions are the options of `podman exec`.
type ExecOptions struct {
	User        string
	Workdir     string
	Env         []string
	TTY         bool
	Interactive bool
}

// ExecArgs returns the arguments of `podman exec` in container.
func ExecArgs(container string, o ExecOptions, command []string) []string {
	args := []string{"exec"}
	if o.Interactive {
		args = append(args, "-i")
	}
	if o.TTY {
		args = append(args, "-t")
	}
	if o.User != "" {
		args = append(args, "--user", o.User)
	}
	if o.Workdir != "" {
		args = append(args, "--workdir", o.Workdir)
	}
	for _, e := range o.Env {
		args = append(args, "--env", e)
	}
	args = append(args, container)
	return append(args, command...)
}
