package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const mod = "github.com/sagemathinc/cocalc-hosts/"

// goList runs `go list` from the module root.
func goList(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(goCommand(t), append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v: %s", args, err, out)
	}
	return string(out)
}

// goCommand is the go command of the toolchain that built this test
// (GOROOT/bin/go), so the tests run wherever the tests run, whatever PATH
// says.
func goCommand(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // the toolchain that runs the test
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command: not in GOROOT %q and not on PATH", runtime.GOROOT()) //nolint:staticcheck
		}
	}
	return goBin
}

// deps lists what pkgs link, within this module.
func deps(t *testing.T, pkgs ...string) []string {
	var out []string
	for _, d := range strings.Fields(goList(t, append([]string{"-deps"}, pkgs...)...)) {
		if strings.HasPrefix(d, mod) {
			out = append(out, strings.TrimPrefix(d, mod))
		}
	}
	return out
}

// imports maps each package matched by pattern to what it imports
// directly (its test files not included).
func imports(t *testing.T, pattern string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", pattern)), "\n") {
		f := strings.Fields(line)
		out[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	return out
}

func has(list []string, prefix string) string {
	for _, d := range list {
		if d == prefix || strings.HasPrefix(d, prefix+"/") {
			return d
		}
	}
	return ""
}

// The agent runs on machines that hold users' projects; it must not link
// the store (database credentials), the settings, or the providers (cloud
// credentials).
func TestAgentLinksNoCredentials(t *testing.T) {
	got := deps(t, "./pkg/agent")
	for _, bad := range []string{"pkg/store", "pkg/config", "pkg/provider", "providers", "pkg/hosts", "pkg/queue", "pkg/app"} {
		if d := has(got, bad); d != "" {
			t.Errorf("the agent links %s", d)
		}
	}
}

// The control plane writes the agent's configuration (agentapi.Config)
// without linking the agent's runtime: podman, the project storage and
// the agent itself. The SSH bootstrap links no btrfs either; the local
// provider does, by design: it makes the local host's disk (a btrfs
// filesystem in a loop-mounted image), as a cloud makes a VM's disk.
func TestControlPlaneLinksNoAgentRuntime(t *testing.T) {
	runtimePkgs := []string{"pkg/agent", "pkg/podman", "pkg/storage"}
	for _, c := range []struct {
		pkg string
		bad []string
	}{
		{"./pkg/sshboot", append(runtimePkgs, "pkg/btrfs")},
		{"./providers/local", runtimePkgs},
	} {
		got := deps(t, c.pkg)
		for _, bad := range c.bad {
			if d := has(got, bad); d != "" {
				t.Errorf("%s links %s", c.pkg, d)
			}
		}
	}
}

// Only the command layer knows about the command line: no other package
// under pkg/ imports cobra, pflag or viper.
func TestOnlyTheCommandLayerImportsCobra(t *testing.T) {
	all := imports(t, "./pkg/...")
	if imps := all["pkg/cli"]; has(imps, "github.com/spf13/cobra") == "" {
		t.Fatalf("go list shows pkg/cli without cobra (%d packages listed): this test would see nothing", len(all))
	}
	for pkg, imps := range all {
		if pkg == "pkg/cli" || strings.HasPrefix(pkg, "pkg/cli/") {
			continue
		}
		for _, bad := range []string{"github.com/spf13/cobra", "github.com/spf13/pflag", "github.com/spf13/viper"} {
			if has(imps, bad) != "" {
				t.Errorf("%s imports %s; only pkg/cli may", pkg, bad)
			}
		}
	}
}

// Dependencies point one way: cmd → pkg/cli → pkg/worker → pkg/app →
// domain packages → store, providers, agent client. Nothing imports the
// command layer but cmd; only the command layer, the daemons and the
// benchmark programs under bench/ (main programs, like cmd) use the
// composition root; providers never reach up into the domain.
func TestImportDirection(t *testing.T) {
	all := imports(t, "./...")
	for pkg, imps := range all {
		in := func(p string) bool { return pkg == p || strings.HasPrefix(pkg, p+"/") }
		short := make([]string, 0, len(imps))
		for _, i := range imps {
			short = append(short, strings.TrimPrefix(i, mod))
		}
		if !in("cmd") && has(short, "pkg/cli") != "" && !in("pkg/cli") {
			t.Errorf("%s imports the command layer", pkg)
		}
		if !in("cmd") && !in("bench") && !in("pkg/cli") && !in("pkg/worker") && !in("pkg/app") && has(short, "pkg/app") != "" {
			t.Errorf("%s imports the composition root (pkg/app)", pkg)
		}
		if has(short, "pkg/worker") != "" && !in("cmd") && !in("pkg/cli") && !in("pkg/worker") {
			t.Errorf("%s imports the daemons (pkg/worker)", pkg)
		}
		if in("providers") || in("pkg/provider") {
			for _, bad := range []string{"pkg/hosts", "pkg/projects", "pkg/queue", "pkg/reconcile", "pkg/catalog", "pkg/sshboot"} {
				if d := has(short, bad); d != "" {
					t.Errorf("provider package %s imports the domain package %s", pkg, d)
				}
			}
		}
	}
	if len(all) < 40 {
		t.Fatalf("go list found only %d packages", len(all))
	}
}
