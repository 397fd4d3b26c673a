package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite completions/ from the command tree")

// The shell completions in completions/ must match the command tree. Run
// `go test ./pkg/cli -run TestCompletionsAreCurrent -update` after changing
// commands or flags.
func TestCompletionsAreCurrent(t *testing.T) {
	dir := filepath.Join("..", "..", "completions")
	for shell, file := range map[string]string{
		"bash": "cocalc-hosts.bash", "zsh": "_cocalc-hosts", "fish": "cocalc-hosts.fish",
	} {
		var out bytes.Buffer
		f := NewFactory(&IOStreams{Out: &out, ErrOut: &out, In: &bytes.Buffer{}})
		if code := Execute(t.Context(), f, []string{"completion", shell}); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, out.String())
		}
		path := filepath.Join(dir, file)
		if *update {
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (generate with -update)", err)
		}
		if !bytes.Equal(have, out.Bytes()) {
			t.Errorf("%s is stale: run `go test ./pkg/cli -run TestCompletionsAreCurrent -update`", path)
		}
	}
}
