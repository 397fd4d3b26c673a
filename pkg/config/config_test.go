package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// home gives the test its own HOME and state directory.
func home(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	return dir
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDefaults(t *testing.T) {
	dir := home(t)
	s, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "config", AppName, "config.yaml"); s.File != want {
		t.Errorf("File = %s, want %s", s.File, want)
	}
	if want := filepath.Join(dir, "state", AppName, "state.db"); s.DB != want {
		t.Errorf("DB = %s, want %s", s.DB, want)
	}
	if s.Account == "" || s.Output != "table" || s.Worker.Concurrency != 4 || s.Worker.Lease != 30*time.Second ||
		s.Worker.MaxAttempts != 5 || s.Catalog.CapacityTTL != 15*time.Minute || s.Bootstrap.SnapshotInterval != time.Hour ||
		s.DNS.Endpoint != "https://api.cloudflare.com/client/v4" || len(s.Providers) != 0 ||
		s.Tokens.TTL != 15*time.Minute || s.Tokens.SSHCertValidity != 30*time.Minute || s.Ingress.ACLTTL != time.Minute ||
		s.Ingress.ACLMaxStale != 10*time.Minute || s.Ingress.HTTPSPort != 443 || s.Ingress.SSHPort != 2222 ||
		s.Ingress.SessionTTL != 12*time.Hour {
		t.Errorf("defaults: %+v", s)
	}
	// Every key is listed, from its default, with a description; numbers
	// stay numbers.
	all := s.All()
	if len(all) != len(keys) {
		t.Fatalf("All lists %d settings, want %d", len(all), len(keys))
	}
	for _, st := range all {
		if st.Source != "default" || st.Description == "" {
			t.Errorf("%+v", st)
		}
	}
	if v, ok := s.Get("worker.concurrency"); !ok || v != 4 {
		t.Errorf("worker.concurrency = %#v, %v", v, ok)
	}
	if _, ok := s.Get("colour"); ok {
		t.Error("an unknown key is set")
	}
}

// Values come from the file, typed, unless a flag gives them.
func TestFileAndFlags(t *testing.T) {
	dir := home(t)
	path := filepath.Join(dir, "c.yaml")
	write(t, path, `
db: /srv/state.db
output: json
worker:
  lease: 2m
  max_attempts: 2
providers:
  sim:
    latency: 200ms
  local:
pricing:
  disk_gb_month:
    gcp: 0.04
bootstrap:
  secrets: a=/etc/a.key, b=/etc/b.key
`)
	s, err := Load(path, map[string]string{"output": "table", "account": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if s.DB != "/srv/state.db" || s.Output != "table" || s.Account != "alice" || s.Worker.Lease != 2*time.Minute ||
		s.Worker.MaxAttempts != 2 || s.DiskPrices["gcp"] != 0.04 || s.Bootstrap.Secrets["b"] != "/etc/b.key" {
		t.Errorf("settings: %+v", s)
	}
	if got := s.ConfiguredProviders(); strings.Join(got, ",") != "local,sim" {
		t.Errorf("configured providers %v", got)
	}
	if o := s.ProviderOptions("sim"); o["latency"] != "200ms" || len(o) != 1 {
		t.Errorf("sim options %v", o)
	}
	src := map[string]string{}
	for _, st := range s.All() {
		src[st.Key] = st.Source
	}
	if src["db"] != "file" || src["output"] != "flag" || src["account"] != "flag" || src["worker.concurrency"] != "default" ||
		src["providers.sim.latency"] != "file" {
		t.Errorf("sources %v", src)
	}
	if v, _ := s.Get("worker.max_attempts"); v != 2 {
		t.Errorf("worker.max_attempts from the file = %#v, want the number 2", v)
	}
}

// Every bad key is reported at load, each once and by name, and nothing
// is returned.
func TestEveryBadKeyReported(t *testing.T) {
	dir := home(t)
	path := filepath.Join(dir, "c.yaml")
	write(t, path, `
colour: blue
worker:
  concurrency: many
  lease: 10ms
  reconcile_interval: -1m
catalog:
  ttl:
    capacity: 0s
output: xml
pricing:
  disk_gb_month:
    sim: cheap
bootstrap:
  secrets: key
  agent_url: ftp://example.org/agent
  agent_sha256_linux_arm64: abc
dns:
  - a
tokens:
  ttl: 48h
ingress:
  https_port: 70000
  acl_max_stale: 0s
otel:
  endpoint: collector:4318
`)
	s, err := Load(path, nil)
	var le *LoadError
	if s != nil || !errors.As(err, &le) || le.File != path {
		t.Fatalf("Load = %v, %v", s, err)
	}
	msg := err.Error()
	for _, want := range []string{
		`config colour: no such setting`,
		`config worker.concurrency: "many" is not a whole number`,
		`config worker.lease: "10ms" is shorter than 1s`,
		`config worker.reconcile_interval: "-1m" must not be negative`,
		`config catalog.ttl.capacity: "0s" must be more than 0`,
		`config output: invalid output format "xml": use table or json`,
		`config pricing.disk_gb_month.sim: "cheap": want a price in USD per GB-month`,
		`config bootstrap.secrets: "key" is not NAME=FILE`,
		`config bootstrap.agent_url: "ftp://example.org/agent" is not an https:// or file:// URL`,
		`config bootstrap.agent_sha256_linux_arm64: "abc" is not a sha256`,
		`config dns: give one value, not a list`,
		`config tokens.ttl: "48h": use a duration between 1s and 24h0m0s`,
		`config ingress.https_port: "70000" is not a port (1-65535, or 0 for off)`,
		`config ingress.acl_max_stale: "0s": use a duration between 1s and 24h0m0s`,
		`config otel.endpoint: "collector:4318" is not an OTLP/HTTP address such as http://otel-collector:4318`,
	} {
		if strings.Count(msg, want) != 1 {
			t.Errorf("error lacks (or repeats) %q:\n%s", want, msg)
		}
	}
	if len(le.Errs) != 15 {
		t.Errorf("%d errors, want 15: %s", len(le.Errs), msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("the error is not one line: %q", msg)
	}
	// A bad flag names the flag, not the file.
	_, err = Load(filepath.Join(dir, "missing.yaml"), map[string]string{"output": "xml"})
	if !errors.As(err, &le) || le.File != "" || err.Error() != `--output: invalid output format "xml": use table or json` {
		t.Errorf("bad flag: %v", err)
	}
}

// `config set` changes one key and keeps everything else in the file,
// comments included; bad keys and values change nothing.
func TestSetKeepsCommentsAndRefusesBadValues(t *testing.T) {
	dir := home(t)
	path := filepath.Join(dir, "c.yaml")
	orig := `# Our team's settings.
db: postgres://hosts@db.internal:5432/cocalc # shared
worker:
  # Small machine.
  concurrency: 2
providers:
  gcp:
    project: acme # billing account 7
`
	write(t, path, orig)
	for _, bad := range [][2]string{{"colour", "blue"}, {"worker.lease", "soon"}, {"worker.concurrency", "0"},
		{"pricing.disk_gb_month.gcp", "-1"}, {"providers.gcp", "x"}} {
		if err := Set(path, bad[0], bad[1]); err == nil {
			t.Errorf("Set(%s, %s) accepted", bad[0], bad[1])
		}
	}
	if b, _ := os.ReadFile(path); string(b) != orig {
		t.Fatalf("a refused set changed the file:\n%s", b)
	}
	for _, kv := range [][2]string{{"worker.concurrency", "8"}, {"worker.lease", "1m"}, {"providers.gcp.zone", "us-east1-b"},
		{"pricing.disk_gb_month.gcp", "0.05"}, {"dns.domain", "hosts.example.org"}} {
		if err := Set(path, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Our team's settings.", "# shared", "# Small machine.", "# billing account 7", "project: acme"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("lost %q:\n%s", want, b)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	s, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Worker.Concurrency != 8 || s.Worker.Lease != time.Minute || s.ProviderOptions("gcp")["zone"] != "us-east1-b" ||
		s.ProviderOptions("gcp")["project"] != "acme" || s.DiskPrices["gcp"] != 0.05 || s.DNS.Domain != "hosts.example.org" ||
		s.DB != "postgres://hosts@db.internal:5432/cocalc" {
		t.Errorf("after set: %+v", s)
	}
}

// A file that is wrong in one place can still be fixed with `config set`.
func TestSetFixesABadFile(t *testing.T) {
	dir := home(t)
	path := filepath.Join(dir, "c.yaml")
	write(t, path, "worker:\n  lease: soon\n")
	if _, err := Load(path, nil); err == nil {
		t.Fatal("bad file loaded")
	}
	if err := Set(path, "worker.lease", "45s"); err != nil {
		t.Fatal(err)
	}
	if s, err := Load(path, nil); err != nil || s.Worker.Lease != 45*time.Second {
		t.Fatalf("after the fix: %v %v", s, err)
	}
}

func TestAddProvider(t *testing.T) {
	dir := home(t)
	path := filepath.Join(dir, "new", "c.yaml")
	if err := AddProvider(path, "sim", nil); err != nil {
		t.Fatal(err)
	}
	if err := AddProvider(path, "lambda", map[string]string{"credentials": "/k/lambda.key", "endpoint": "http://x"}); err != nil {
		t.Fatal(err)
	}
	if err := AddProvider(path, "lambda", map[string]string{"region": "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.ConfiguredProviders(), ","); got != "lambda,sim" {
		t.Errorf("configured %s", got)
	}
	if o := s.ProviderOptions("lambda"); o["credentials"] != "/k/lambda.key" || o["endpoint"] != "http://x" || o["region"] != "us-east-1" {
		t.Errorf("lambda options %v", o)
	}
	for _, bad := range []string{"", "a.b"} {
		if err := AddProvider(path, bad, nil); err == nil {
			t.Errorf("provider name %q accepted", bad)
		}
	}
	if err := AddProvider(path, "gcp", map[string]string{"a.b": "x"}); err == nil {
		t.Error("option name a.b accepted")
	}
}

// Each key's default passes its own check.
func TestKeyTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.name] || k.desc == "" {
			t.Errorf("key %s: duplicate or undocumented", k.name)
		}
		seen[k.name] = true
		s := Settings{}
		s.Bootstrap.AgentSHA256, s.Bootstrap.Secrets = map[string]string{}, map[string]string{}
		if err := k.set(&s, k.def); err != nil {
			t.Errorf("default of %s: %v", k.name, err)
		}
	}
}
