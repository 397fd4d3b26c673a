package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs on machines that hold users' projects; it must not link
// the store (database credentials) or the providers (cloud credentials).
func TestNoCredentialPackages(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	const mod = "github.com/sagemathinc/cocalc-hosts/"
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"pkg/store", "pkg/config", "pkg/provider", "providers/", "pkg/hosts", "pkg/queue"} {
			if strings.HasPrefix(dep, mod+bad) {
				t.Errorf("agent depends on %s", dep)
			}
		}
	}
}
