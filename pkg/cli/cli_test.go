package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	defer f.Close()
	code := Execute(context.Background(), f, args)
	return code, out.String(), errOut.String()
}

// A state database locked by another process gives exit code 5 and a
// message that names the lock, and writes nothing.
func TestLockedSQLite(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	path := filepath.Join(dir, "state.db")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("sqlite:\n  busy_timeout: 200ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := run(t, "--config", cfg, "--db", path, "create", "--cloud", "sim", "--name", "x")
	if code != ExitUnavailable || !strings.Contains(stderr, "is locked by another process") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("error must be one line: %q", stderr)
	}
	// Reads still work while another process writes.
	if code, out, stderr := run(t, "--config", cfg, "--db", path, "list", "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list under a write lock: exit %d %q %q", code, out, stderr)
	}
	conn.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck
	if code, out, _ := run(t, "--config", cfg, "--db", path, "list", "-o", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("the locked create left something behind: %q", out)
	}
}

func TestExitCodeHelpListsEveryCode(t *testing.T) {
	code, out, _ := run(t, "help", "exit-codes")
	if code != 0 {
		t.Fatal(code)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ExitCodeTable {
		if !strings.Contains(out, fmt.Sprintf("%3d  %-12s %s\n", e.Code, e.Kind, e.Meaning)) {
			t.Errorf("help exit-codes lacks %d %s %q", e.Code, e.Kind, e.Meaning)
		}
		kind := string(e.Kind)
		if kind != "" {
			kind = "`" + kind + "`"
		}
		if row := fmt.Sprintf("| %d | %s | %s |", e.Code, kind, e.Meaning); !strings.Contains(string(readme), row) {
			t.Errorf("README.md exit code table lacks the row %s", row)
		}
	}
}

// Every error kind has exactly one exit code, and an error of that kind
// exits with it however deeply it is wrapped.
func TestEveryKindHasOneExitCode(t *testing.T) {
	codes := map[errkind.Kind][]int{}
	for _, e := range ExitCodeTable {
		if e.Kind != "" {
			codes[e.Kind] = append(codes[e.Kind], e.Code)
		}
	}
	for _, k := range errkind.All() {
		if len(codes[k]) != 1 {
			t.Errorf("kind %s has exit codes %v, want exactly one", k, codes[k])
			continue
		}
		err := fmt.Errorf("start host h: %w", errkind.New(k, "x"))
		if got := exitCode(err); got != codes[k][0] {
			t.Errorf("an error of kind %s exits %d, want %d", k, got, codes[k][0])
		}
		delete(codes, k)
	}
	for k := range codes {
		t.Errorf("exit code table names kind %q, which errkind does not have", k)
	}
}

// Flags given to a subcommand win over the config file and show as the
// setting's source.
func TestFlagsOverrideConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("output: table\naccount: bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, "--config", cfg, "config", "list", "--account", "alice", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var all []config.Setting
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	got := map[string]config.Setting{}
	for _, s := range all {
		got[s.Key] = s
	}
	if got["output"].Value != "json" || got["output"].Source != "flag" || got["account"].Value != "alice" ||
		got["account"].Source != "flag" || got["worker.lease"].Source != "default" {
		t.Errorf("settings: %+v", got)
	}
}

// --help shows each flag's value type, not a `quoted` word of its usage
// (pflag reads those as the type name), and boolean flags without
// "[=true|false]".
func TestHelpShowsFlagTypes(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	code, out, errOut := run(t, "create", "--help")
	if code != 0 {
		t.Fatalf("create --help exited %d: %s", code, errOut)
	}
	for _, want := range []string{"--cloud string ", "--address string ", "--dry-run    ", "(see cocalc-hosts providers)", `(default "table")`} {
		if !strings.Contains(out, want) {
			t.Errorf("create --help lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"[=true|false]", "--cloud cocalc-hosts", "--address cocalc-hosts"} {
		if strings.Contains(out, bad) {
			t.Errorf("create --help shows %q:\n%s", bad, out)
		}
	}
}
