package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// The one-line summaries `show` prints, as users read them.
func TestShowLines(t *testing.T) {
	up := &AgentHealth{Reachable: true, Status: &agentapi.Status{Version: "1.2.3", UptimeSeconds: 3725.4,
		Storage: agentapi.Storage{Kind: agentapi.StorageBtrfs, FreeBytes: 3 << 29, TotalBytes: 128 << 30}}}
	if got, want := agentLine(up), "version 1.2.3, up 1h2m5s, 1.5 GiB free of 128 GiB on btrfs"; got != want {
		t.Errorf("agentLine = %q, want %q", got, want)
	}
	if got := agentLine(&AgentHealth{Error: "connection refused"}); got != "not answering: connection refused" {
		t.Errorf("agentLine of a silent agent = %q", got)
	}
	seen := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	if got := agentLine(&AgentHealth{Error: "timeout", LastContact: &seen}); got != "not answering (last contact 2026-03-04 05:06:07): timeout" {
		t.Errorf("agentLine with a last contact = %q", got)
	}

	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	in := model.HostIngress{HTTPSAddr: "10.0.0.5:443", TLSCertSHA256: "0123456789abcdef0123", SSHAddr: "10.0.0.5:2222",
		PushedAt: now.Add(-90 * time.Second), Error: "last push failed"}
	if got, want := ingressLine(in, now), "https 10.0.0.5:443 (self-signed certificate sha256 0123456789abcdef…), ssh 10.0.0.5:2222; access list pushed 1m ago; last push failed"; got != want {
		t.Errorf("ingressLine = %q, want %q", got, want)
	}
	in.Error, in.SSHAddr = "", ""
	in.Cert = &model.HostCert{Issuer: "Pebble Intermediate CA", Name: "gpu1.example.org", NotAfter: time.Date(2027, 3, 5, 0, 0, 0, 0, time.UTC)}
	in.CertError = "acme: the CA did not validate gpu1.example.org over DNS-01"
	if got, want := ingressLine(in, now), "https 10.0.0.5:443 (certificate for gpu1.example.org from Pebble Intermediate CA until 2027-03-05; "+
		"the last attempt to get a CA certificate failed: acme: the CA did not validate gpu1.example.org over DNS-01); access list pushed 1m ago"; got != want {
		t.Errorf("ingressLine with a CA certificate = %q, want %q", got, want)
	}
	if got := ingressLine(model.HostIngress{PushedAt: now}, now); got != "off; access list pushed 0s ago" {
		t.Errorf("ingressLine of no ingress = %q", got)
	}
}

// The host table's columns: ages, short ids, cut errors.
func TestTableCells(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		59 * time.Second: "59s ago", 59 * time.Minute: "59m ago", 47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago",
	} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if got := shortID("3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13"); got != "3f1c9a52" {
		t.Errorf("shortID = %q", got)
	}
	if got := shortID("h1"); got != "h1" {
		t.Errorf("shortID of a short id = %q", got)
	}
	if got := truncate("quota\nexceeded in region", 10); got != "quota exc…" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate of a short text = %q", got)
	}
	if orDash("") != "-" || orDash("x") != "x" {
		t.Error("orDash")
	}
}

// backup config --credentials reads KEY=VALUE lines from a 0600 file; a
// bad line is named by number, never shown (it may hold a secret).
func TestReadBackupCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("# the bucket's keys\nAWS_ACCESS_KEY_ID = AKIA1\n\nAWS_SECRET_ACCESS_KEY=s=cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readBackupCredentials(good)
	if err != nil || len(got) != 2 || got["AWS_ACCESS_KEY_ID"] != "AKIA1" || got["AWS_SECRET_ACCESS_KEY"] != "s=cret" {
		t.Fatalf("readBackupCredentials = %v, %v", got, err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("A=1\nhunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = readBackupCredentials(bad)
	if errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "line 2 is not KEY=VALUE") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad line: %v", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readBackupCredentials(open); errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "--credentials") {
		t.Fatalf("a file others can read: %v", err)
	}
	if _, err := readBackupCredentials(filepath.Join(dir, "missing")); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("a missing file: %v", err)
	}
}

// Run functions refuse bad values before they do anything, with exit
// code 2 and a message naming the flag: the checks no script reaches.
func TestRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "h1", "--limit", "-1"}, "--limit must be 0 or more, got -1"},
		{[]string{"audit", "--limit", "-1"}, "--limit -1: give a positive count"},
		{[]string{"dashboard", "--refresh", "10ms"}, "--refresh 10ms is too short; use 100ms or more"},
		{[]string{"dashboard", "--timeout", "1ms"}, "--timeout 1ms is too short"},
		{[]string{"dashboard", "-o", "json"}, "dashboard is interactive and has no JSON output"},
		{[]string{"dashboard"}, "dashboard needs a terminal"},
		{[]string{"project", "create", "--host", "h1", "--memory", "0"}, "--memory must be more than 0"},
		{[]string{"project", "create", "--host", "h1", "--memory", "lots"}, "--memory: "},
		{[]string{"project", "create", "--host", "h1", "--disk", "0"}, "--disk must be more than 0"},
		{[]string{"project", "create", "--host", "h1", "--cpus", "-1"}, "--cpus and --pids must not be negative"},
		{[]string{"project", "create", "--host", "h1", "--idle-timeout", "-1m"}, "--idle-timeout must not be negative"},
		{[]string{"project", "exec", "3f1c9a52-8d0b-4c7e-9a61-2b5d7e4f0c13", "--env", "NOEQUALS", "--", "true"}, `--env "NOEQUALS": want NAME=VALUE`},
		{[]string{"idle-stop", "h1", "--after", "30m", "--off"}, "give --after or --off, not both"},
		{[]string{"idle-stop", "h1", "--after", "-5m"}, "--after must be a positive duration"},
		{[]string{"backup", "config", "--credentials", filepath.Join(dir, "creds")}, "--credentials goes with --repository"},
	} {
		code, out, stderr := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, stderr, c.want)
		}
	}
}
