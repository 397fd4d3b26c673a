package bootstrap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/bootstrap"
)

// The scripts run on machines we do not control: they must be plain
// POSIX sh, clean under shellcheck.
func TestShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck is missing; run scripts/install-deps.sh")
	}
	files, err := filepath.Glob("*.sh")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	out, err := exec.Command("shellcheck", append([]string{"--shell=sh", "--severity=style"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

// Every script on disk is embedded and uploaded, and parses as sh.
func TestEmbeddedAndParse(t *testing.T) {
	files, _ := filepath.Glob("*.sh")
	embedded := map[string]string{}
	for n, s := range bootstrap.Files() {
		embedded[n] = s
	}
	embedded["install-agent.sh"] = bootstrap.InstallAgent
	embedded["install-files.sh"] = bootstrap.InstallFiles
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if embedded[f] != string(b) {
			t.Fatalf("%s is not embedded as it is on disk", f)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Fatalf("%s must start with #!/bin/sh", f)
		}
		if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
			t.Fatalf("sh -n %s: %v\n%s", f, err, out)
		}
	}
	if len(files) != len(embedded) {
		t.Fatalf("%d scripts on disk, %d embedded", len(files), len(embedded))
	}
	if bootstrap.Digest() == "" || len(bootstrap.Digest()) != 64 {
		t.Fatal("digest")
	}
}
