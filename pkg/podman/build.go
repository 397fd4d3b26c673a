package podman

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// BuildSpec describes a Debian base image made from Debian packages, for
// hosts that cannot reach a container registry.
type BuildSpec struct {
	// Suite is the Debian release ("bookworm").
	Suite string `json:"suite"`
	// Variant is the debootstrap variant ("minbase").
	Variant string `json:"variant"`
	// Include lists extra packages.
	Include []string `json:"include,omitempty"`
	// Mirror is the Debian mirror; empty uses the tool's default.
	Mirror string `json:"mirror,omitempty"`
}

// DefaultBuildSpec is the small base image `image build` makes: Debian
// minbase (a shell and coreutils) plus procps, so ps and top work.
var DefaultBuildSpec = BuildSpec{Suite: "bookworm", Variant: "minbase", Include: []string{"procps"}}

var (
	// Lengths (suite at most 32, package at most 100) are checked apart:
	// a counted repetition compiles into that many copies at start-up.
	suiteRE   = lazyre.New(`^[a-z][a-z0-9-]+$`)
	packageRE = lazyre.New(`^[a-z0-9][a-z0-9+.-]*$`)
	mirrorRE  = lazyre.New(`^(https?|file)://[^\s'"]+$`)
)

// Normalize fills defaults, sorts the package list and checks every field
// (they become arguments of a root-run tool).
func (s BuildSpec) Normalize() (BuildSpec, error) {
	if s.Suite == "" {
		s.Suite = DefaultBuildSpec.Suite
	}
	if s.Variant == "" {
		s.Variant = DefaultBuildSpec.Variant
	}
	if len(s.Suite) > 32 || !suiteRE().MatchString(s.Suite) {
		return s, fmt.Errorf("suite %q is not a Debian release name such as bookworm", s.Suite)
	}
	switch s.Variant {
	case "minbase", "buildd", "fakechroot":
	default:
		return s, fmt.Errorf("variant %q: use minbase, buildd or fakechroot", s.Variant)
	}
	seen := map[string]bool{}
	var inc []string
	for _, p := range s.Include {
		for _, q := range strings.Split(p, ",") {
			q = strings.TrimSpace(q)
			if q == "" || seen[q] {
				continue
			}
			if len(q) > 100 || !packageRE().MatchString(q) {
				return s, fmt.Errorf("package name %q is not a Debian package name", q)
			}
			seen[q] = true
			inc = append(inc, q)
		}
	}
	sort.Strings(inc)
	s.Include = inc
	if s.Mirror != "" && !mirrorRE().MatchString(s.Mirror) {
		return s, fmt.Errorf("mirror %q is not an http(s) or file URL", s.Mirror)
	}
	return s, nil
}

// Key identifies the root filesystem a spec makes, for caching.
func (s BuildSpec) Key() string {
	h := sha256.Sum256([]byte(strings.Join([]string{s.Suite, s.Variant, strings.Join(s.Include, ","), s.Mirror}, "\n")))
	return s.Suite + "-" + s.Variant + "-" + hex.EncodeToString(h[:])[:12]
}

// DefaultMirror is the Debian mirror mmdebstrap and debootstrap use when
// given none.
const DefaultMirror = "http://deb.debian.org/debian"

// CheckMirror makes sure the Debian mirror of s (normalized) serves its
// suite, before a build that would download packages from it: a build
// is not offline, and an unreachable mirror is named with the fix rather
// than left to the bootstrap tool's retries and output.
func CheckMirror(ctx context.Context, s BuildSpec) error {
	mirror := s.Mirror
	if mirror == "" {
		mirror = DefaultMirror
	}
	release := strings.TrimRight(mirror, "/") + "/dists/" + s.Suite + "/Release"
	fix := "building an image downloads Debian packages from a mirror; pass one this host reaches with --mirror URL (http(s) or file://), or put the root filesystem in the host's image cache"
	if path, ok := strings.CutPrefix(release, "file://"); ok {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("the Debian mirror %s has no %s release (%v): %s", mirror, s.Suite, err, fix)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, release, nil)
	if err != nil {
		return fmt.Errorf("the Debian mirror %s: %v: %s", mirror, err, fix)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Debian mirror %s (%v): %s", mirror, err, fix)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the Debian mirror %s has no %s release (HEAD %s: %s): %s", mirror, s.Suite, release, resp.Status, fix)
	}
	return nil
}

// Bootstrapper returns the tool that builds root filesystems here:
// mmdebstrap (faster, writes a tarball directly) or debootstrap.
func Bootstrapper() (string, error) {
	for _, t := range []string{"mmdebstrap", "debootstrap"} {
		if p, err := exec.LookPath(t); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither mmdebstrap nor debootstrap is installed on this host; install one (apt-get install mmdebstrap)")
}

// BuildRootfs writes the root filesystem of s as a tarball to out, with the
// tool's output going to log.
func BuildRootfs(ctx context.Context, s BuildSpec, out string, log io.Writer) error {
	s, err := s.Normalize()
	if err != nil {
		return err
	}
	tool, err := Bootstrapper()
	if err != nil {
		return err
	}
	tmp := out + ".partial.tar"
	os.Remove(tmp)
	defer os.Remove(tmp)
	if filepath.Base(tool) == "mmdebstrap" {
		args := []string{"--variant=" + s.Variant}
		if len(s.Include) > 0 {
			args = append(args, "--include="+strings.Join(s.Include, ","))
		}
		args = append(args, s.Suite, tmp)
		if s.Mirror != "" {
			args = append(args, s.Mirror)
		}
		if err := runLogged(ctx, log, tool, args...); err != nil {
			return err
		}
	} else {
		dir, err := os.MkdirTemp(filepath.Dir(out), ".rootfs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		args := []string{"--variant=" + s.Variant}
		if len(s.Include) > 0 {
			args = append(args, "--include="+strings.Join(s.Include, ","))
		}
		args = append(args, s.Suite, dir)
		if s.Mirror != "" {
			args = append(args, s.Mirror)
		}
		if err := runLogged(ctx, log, tool, args...); err != nil {
			return err
		}
		if err := runLogged(ctx, log, "tar", "--numeric-owner", "-C", dir, "-cf", tmp, "."); err != nil {
			return err
		}
	}
	return os.Rename(tmp, out)
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	fmt.Fprintf(log, "$ %s %s\n", name, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w (see the output above)", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

// CachedRootfs returns the tarball of s in cacheDir, building it first if
// it is not there (or if rebuild is set). Builds of the same spec are
// serialized with a file lock, so concurrent callers (agents, test
// processes) build it once.
func CachedRootfs(ctx context.Context, cacheDir string, s BuildSpec, rebuild bool, log io.Writer) (path string, cached bool, err error) {
	s, err = s.Normalize()
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", false, fmt.Errorf("image cache: %w", err)
	}
	path = cachedPath(cacheDir, s)
	unlock, err := lockFile(ctx, path+".lock")
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if !rebuild {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			fmt.Fprintf(log, "using cached root filesystem %s (built %s)\n", path, st.ModTime().UTC().Format(time.RFC3339))
			return path, true, nil
		}
	}
	if err := BuildRootfs(ctx, s, path, log); err != nil {
		return "", false, err
	}
	return path, false, nil
}

func cachedPath(cacheDir string, s BuildSpec) string {
	return filepath.Join(cacheDir, "rootfs-"+s.Key()+".tar")
}

// IsCached reports whether cacheDir holds the root filesystem of s (a
// normalized spec), so that building it needs no bootstrap tool.
func IsCached(cacheDir string, s BuildSpec) bool {
	st, err := os.Stat(cachedPath(cacheDir, s))
	return err == nil && st.Size() > 0
}

func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BuildImage makes image name from s: the root filesystem comes from
// cacheDir when it holds one for s (unless rebuild), else it is built with
// mmdebstrap or debootstrap; then it is imported into podman.
func (p *Podman) BuildImage(ctx context.Context, name string, s BuildSpec, cacheDir string, rebuild bool, log io.Writer) (cached bool, err error) {
	if cacheDir == "" {
		dir, err := os.MkdirTemp("", "cocalc-image-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		cacheDir = dir
	}
	tarball, cached, err := CachedRootfs(ctx, cacheDir, s, rebuild, log)
	if err != nil {
		return false, fmt.Errorf("build image %s: %w", name, err)
	}
	from, err := rootfsFingerprint(tarball)
	if err != nil {
		return cached, fmt.Errorf("build image %s: %w", name, err)
	}
	if cached {
		// Hosts sharing a store, or a build run again: importing the
		// same root filesystem again costs seconds of CPU for nothing.
		if have, err := p.imageLabel(ctx, name, RootfsLabel); err != nil {
			return cached, fmt.Errorf("build image %s: %w", name, err)
		} else if have == from {
			fmt.Fprintf(log, "image %s is already made from %s\n", name, filepath.Base(tarball))
			return cached, nil
		}
	}
	fmt.Fprintf(log, "importing %s as %s\n", filepath.Base(tarball), name)
	if _, err := p.Run(ctx, "import", "-q", "--change", "LABEL "+RootfsLabel+"="+from, tarball, name); err != nil {
		return cached, fmt.Errorf("build image %s: %w", name, err)
	}
	return cached, nil
}

// RootfsLabel, on an image BuildImage made, names the root filesystem
// tarball it was imported from (see rootfsFingerprint).
const RootfsLabel = "org.cocalc-hosts.rootfs"

// rootfsFingerprint tells a cached root filesystem from any other, and
// from itself rebuilt: its name holds the spec's key, and a rebuild
// changes its modification time.
func rootfsFingerprint(tarball string) (string, error) {
	st, err := os.Stat(tarball)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d:%d", filepath.Base(tarball), st.Size(), st.ModTime().UnixNano()), nil
}

// imageLabel returns label of image, or "" when the image or the label is
// missing.
func (p *Podman) imageLabel(ctx context.Context, image, label string) (string, error) {
	if ok, err := p.ImageExists(ctx, image); err != nil || !ok {
		return "", err
	}
	out, err := p.Run(ctx, "image", "inspect", "--format", `{{index .Labels "`+label+`"}}`, image)
	if err != nil {
		return "", err
	}
	if v := strings.TrimSpace(out); v != "<no value>" {
		return v, nil
	}
	return "", nil
}
