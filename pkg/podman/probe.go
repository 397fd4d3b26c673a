package podman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// Runtime are the settings podman runs project containers with.
type Runtime = agentapi.PodmanRuntime

// rlimitDefault is what podman (as root) asks for nofile and nproc when
// no --ulimit is given; a process whose hard limit is lower (containers,
// micro-VMs, CI runners) cannot grant it, and runc fails with "error
// setting rlimit type 7: operation not permitted".
const rlimitDefault = 1048576

// ClampedUlimits are podman's default nofile and nproc limits, lowered to
// this process's hard limits (an unprivileged process cannot raise them).
// nproc is also at most the kernel's pid_max: podman lowers its own (and
// so the OCI runtime's) hard nproc limit to pid_max when it starts, and
// a container cannot be given more than that.
func ClampedUlimits() ([]string, error) {
	nprocMax := uint64(rlimitDefault)
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			nprocMax = min(nprocMax, v)
		}
	}
	var out []string
	for _, l := range []struct {
		name     string
		resource int
		max      uint64
	}{{"nofile", unix.RLIMIT_NOFILE, rlimitDefault}, {"nproc", unix.RLIMIT_NPROC, nprocMax}} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(l.resource, &rl); err != nil {
			return nil, fmt.Errorf("getrlimit %s: %w", l.name, err)
		}
		v := min(rl.Max, l.max)
		out = append(out, fmt.Sprintf("%s=%d:%d", l.name, v, v))
	}
	return out, nil
}

// probeCandidates are the runtime and cgroup manager pairs tried in
// order: podman's own choice first, then each OCI runtime with each
// cgroup manager (crun fails on hosts in cgroups hybrid mode; the systemd
// manager needs a running systemd).
var probeCandidates = [][2]string{
	{"", ""},
	{"runc", "cgroupfs"},
	{"crun", "cgroupfs"},
	{"runc", "systemd"},
	{"crun", "systemd"},
}

// Probe finds settings that run a container on this machine: it runs a
// tiny container (this machine's own /usr, read-only, running `true`)
// with the limits a project gets, under each candidate runtime and cgroup
// manager until one works. With a containers.conf override it probes
// nothing: the file decides. The caller keeps the result (see Use).
func (p *Podman) Probe(ctx context.Context) Runtime {
	if p.cfg.ContainersConf != "" {
		return Runtime{Source: agentapi.PodmanFromContainersConf}
	}
	rt := Runtime{Source: agentapi.PodmanFromProbe}
	ulimits, err := ClampedUlimits()
	if err != nil {
		rt.Error = err.Error()
		return rt
	}
	rt.Ulimits = ulimits
	rootfs, binds, err := tinyRootfs(p.cfg.TmpDir)
	if err != nil {
		rt.Error = err.Error()
		return rt
	}
	defer os.RemoveAll(rootfs)
	var first error
	for _, c := range probeCandidates {
		if c[0] != "" {
			if _, err := exec.LookPath(c[0]); err != nil {
				continue
			}
		}
		args := runtimeArgs(c[0], c[1])
		args = append(args, "run", "--rm", "--network", "none", "--memory", "64m", "--memory-swap", "64m",
			"--cpus", "0.5", "--pids-limit", "16")
		for _, u := range ulimits {
			args = append(args, "--ulimit", u)
		}
		args = append(args, binds...)
		args = append(args, "--rootfs", rootfs, "/usr/bin/true")
		_, err := p.Run(ctx, args...)
		if err == nil {
			rt.Runtime, rt.CgroupManager = c[0], c[1]
			return rt
		}
		if ctx.Err() != nil {
			rt.Error = ctx.Err().Error()
			return rt
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = errors.New("no OCI runtime (runc or crun) is installed")
	}
	rt.Error = first.Error()
	return rt
}

func runtimeArgs(runtime, cgroupManager string) []string {
	var args []string
	if runtime != "" {
		args = append(args, "--runtime", runtime)
	}
	if cgroupManager != "" {
		args = append(args, "--cgroup-manager", cgroupManager)
	}
	return args
}

// tinyRootfs makes an empty root filesystem for the probe's container:
// this machine's /usr (and /bin, /lib… where they are directories, not
// symlinks into /usr) are bind-mounted read-only, so no image is needed.
// It returns the directory and the --mount flags.
func tinyRootfs(tmp string) (string, []string, error) {
	if tmp != "" {
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return "", nil, fmt.Errorf("podman probe: %w", err)
		}
	}
	dir, err := os.MkdirTemp(tmp, "podman-probe-")
	if err != nil {
		return "", nil, fmt.Errorf("podman probe: %w", err)
	}
	var binds []string
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib32", "lib64"} {
		st, err := os.Lstat("/" + d)
		if err != nil {
			continue
		}
		if st.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink("/" + d)
			if err == nil {
				err = os.Symlink(target, filepath.Join(dir, d))
			}
			if err != nil {
				os.RemoveAll(dir)
				return "", nil, fmt.Errorf("podman probe: %w", err)
			}
			continue
		}
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("podman probe: %w", err)
		}
		binds = append(binds, "--mount", "type=bind,source=/"+d+",target=/"+d+",readonly=true")
	}
	for _, d := range []string{"etc", "proc", "sys", "dev", "tmp", "run"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("podman probe: %w", err)
		}
	}
	return dir, binds, nil
}

// Use makes p run containers with rt (from Probe): its runtime and
// cgroup manager on every command, its ulimits on every container.
func (p *Podman) Use(rt Runtime) {
	if rt.Error != "" || rt.Source != agentapi.PodmanFromProbe {
		return
	}
	p.rt = rt
}

// ulimitArgs are the --ulimit flags of a new container.
func (p *Podman) ulimitArgs() []string {
	var args []string
	for _, u := range p.rt.Ulimits {
		args = append(args, "--ulimit", u)
	}
	return args
}
