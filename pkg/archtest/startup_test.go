package archtest

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Every command starts by initialising every package linked into the
// binary, so package-level work is paid by `--version` and `list` alike
// (issue 14; bench/figures/startup.sh has the figures). This builds the
// binary and reads what `--version` initialises (GODEBUG=inittrace=1):
// no package of ours may do more than 150 allocations at init (the most
// now is ≈ 50; a compiled regexp alone is tens, and one with a counted
// repetition such as {0,127} that many copies: compile it on first use
// with lazyre.New, and check lengths apart), and the GCP
// compute protobuf package (≈ 17 ms of init) stays out of the binary.
// Counts and names, not times: the figure measures the times.
func TestVersionInitialisesLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "cocalc-hosts")
	build := exec.Command(goCommand(t), "build", "-o", bin, "./cmd/cocalc-hosts")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "--version")
	cmd.Env = []string{"GODEBUG=inittrace=1", "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v: %s", err, out)
	}
	const maxAllocs = 150
	ours := 0
	for _, line := range strings.Split(string(out), "\n") {
		// init PKG @0.5 ms, 0.1 ms clock, 1024 bytes, 12 allocs
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[10] != "allocs" {
			continue
		}
		pkg := f[1]
		if strings.HasPrefix(pkg, "cloud.google.com/go/compute") {
			t.Errorf("--version initialises %s: the GCP provider talks to the REST API with its own client", pkg)
		}
		if !strings.HasPrefix(pkg, strings.TrimSuffix(mod, "/")) {
			continue
		}
		ours++
		if n, err := strconv.Atoi(f[9]); err == nil && n > maxAllocs {
			t.Errorf("%s makes %d allocations at init (at most %d): build its package-level values on first use", pkg, n, maxAllocs)
		}
	}
	if ours < 10 {
		t.Fatalf("the init trace lists %d packages of this module; this test would see nothing:\n%s", ours, out)
	}
}
