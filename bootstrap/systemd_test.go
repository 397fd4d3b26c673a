package bootstrap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unitRE finds the agent's systemd unit in bootstrap.sh (a heredoc).
var unitRE = regexp.MustCompile(`(?s)<<UNIT\n(.*?)\nUNIT\n`)

// The test VMs run without systemd, so the unit the bootstrap installs is
// checked here by systemd itself: systemd-analyze verify against a root
// holding the unit, the agent binary it starts and systemd's own units.
// Any complaint (an unknown key, a bad value) fails the test.
func TestSystemdUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing; run scripts/install-deps.sh")
	}
	script, err := os.ReadFile("bootstrap.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := unitRE.FindSubmatch(script)
	if m == nil {
		t.Fatal("no <<UNIT heredoc in bootstrap.sh")
	}
	unit := strings.ReplaceAll(string(m[1]), "$POOL", "/btrfs") + "\n"
	if strings.Contains(unit, "$") {
		t.Fatalf("the unit has a shell variable this test does not fill in:\n%s", unit)
	}
	for _, want := range []string{"KillMode=process", "Restart=always", "RequiresMountsFor=/btrfs", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}

	root := t.TempDir()
	write := func(path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/systemd/system/cocalc-hosts-agent.service", unit, 0o644)
	write("usr/local/bin/cocalc-hosts", "#!/bin/sh\n", 0o755)
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The targets the unit hangs off (multi-user, network-online, ...).
	if out, err := exec.Command("cp", "-r", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy systemd's units: %v\n%s", err, out)
	}
	cmd := exec.Command("systemd-analyze", "verify", "--root="+root, "/etc/systemd/system/cocalc-hosts-agent.service")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}
