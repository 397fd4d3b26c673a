package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// writes counts the Write calls made on it.
type writes struct {
	bytes.Buffer
	n int
}

func (w *writes) Write(p []byte) (int, error) {
	w.n++
	return w.Buffer.Write(p)
}

// hostsDB makes a state database with n hosts h00000, h00001, ...
func hostsDB(t testing.TB, n int) string {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	path := filepath.Join(dir, "state.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for i := range n {
		h := model.Host{ID: uuid.NewString(), Name: fmt.Sprintf("h%05d", i), Owner: "bench", Provider: "sim",
			Region: "sim-east1", Status: model.StatusRunning, LastAction: "create", CreatedAt: now.Add(time.Duration(i) * time.Millisecond), UpdatedAt: now}
		if err := st.CreateHost(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// runOn runs args with stdout w (a terminal when tty).
func runOn(t *testing.T, w *writes, tty bool, args ...string) (int, string) {
	t.Helper()
	var errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: &bytes.Buffer{}, Out: w, ErrOut: &errOut, OutTTY: tty})
	defer f.Close()
	return Execute(context.Background(), f, args), errOut.String()
}

// Whatever the format, a command's result reaches stdout in one write.
func TestOutputIsOneWrite(t *testing.T) {
	db := hostsDB(t, 300)
	for _, c := range []struct {
		tty  bool
		args []string
	}{
		{false, nil}, {true, nil}, {false, []string{"-o", "json"}}, {false, []string{"--jq", ".[].name"}},
		{false, []string{"--template", `{{range .}}{{.name}} {{end}}`}},
	} {
		var w writes
		if code, stderr := runOn(t, &w, c.tty, append([]string{"--db", db, "list"}, c.args...)...); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		if w.n != 1 || !strings.Contains(w.String(), "h00299") {
			t.Errorf("list %v (tty %v): %d writes, output %d bytes", c.args, c.tty, w.n, w.Len())
		}
	}
}

// Tables are aligned on a terminal and tab-separated without one.
func TestTablesAlignOnlyOnATerminal(t *testing.T) {
	db := hostsDB(t, 2)
	var pipe, term writes
	runOn(t, &pipe, false, "--db", db, "list")
	runOn(t, &term, true, "--db", db, "list")
	lines := strings.Split(strings.TrimSpace(pipe.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME\tID\tPROVIDER\t") || !strings.HasPrefix(lines[1], "h00000\t") {
		t.Errorf("without a terminal: %q", pipe.String())
	}
	tl := strings.Split(strings.TrimSpace(term.String()), "\n")
	if len(tl) != 3 || strings.Contains(term.String(), "\t") || !strings.HasPrefix(tl[0], "NAME    ID ") ||
		strings.Index(tl[0], "PROVIDER") != strings.Index(tl[1], "sim") {
		t.Errorf("on a terminal: %q", term.String())
	}
}

// --jq and --template work on every command's JSON, and imply -o json.
func TestJQAndTemplate(t *testing.T) {
	db := hostsDB(t, 3)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--jq", ".[].name"}, "h00000\nh00001\nh00002\n"},
		{[]string{"list", "--jq", "map(select(.name == \"h00001\")) | .[0] | {name, status}"}, `{"name":"h00001","status":"running"}` + "\n"},
		{[]string{"list", "--jq", "length"}, "3\n"},
		{[]string{"list", "--template", `{{range .}}{{.name}}={{.status}};{{end}}`}, "h00000=running;h00001=running;h00002=running;"},
		{[]string{"list", "--template", `{{join "," (pluck "name" .)}}`}, "h00000,h00001,h00002"},
		{[]string{"show", "h00002", "--jq", ".name"}, "h00002\n"},
		{[]string{"config", "get", "output", "--jq", ".value"}, "table\n"},
		{[]string{"version", "--template", "{{.version}}"}, Version},
	} {
		var w writes
		code, stderr := runOn(t, &w, false, append([]string{"--db", db}, c.args...)...)
		if code != 0 || w.String() != c.want {
			t.Errorf("%v: exit %d, %q (stderr %q); want %q", c.args, code, w.String(), stderr, c.want)
		}
	}
	for _, bad := range [][]string{
		{"list", "--jq", ".[] |"},
		{"list", "--template", "{{.name"},
		{"list", "--jq", ".", "--template", "x"},
	} {
		var w writes
		if code, stderr := runOn(t, &w, false, append([]string{"--db", db}, bad...)...); code != ExitUsage || w.Len() != 0 ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want a one-line usage error", bad, code, w.String(), stderr)
		}
	}
}
