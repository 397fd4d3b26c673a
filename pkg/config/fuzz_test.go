package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A config file of any content loads or is refused with a LoadError
// naming at least one bad key or a read error, never a panic; what loads
// has every key set.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("db: /tmp/x.db\nworker:\n  concurrency: 8\n  lease: 45s\n"))
	f.Add([]byte("providers:\n  sim:\n    error_rate: 0.2\n  gcp:\n"))
	f.Add([]byte("disk_prices:\n  gcp: 0.04\nbootstrap:\n  secrets: a=/etc/a.key\n"))
	f.Add([]byte("worker: [1, 2]\n"))
	f.Add([]byte("output: yaml\nworker:\n  lease: -1s\n"))
	f.Add([]byte("\t: :"))
	f.Add([]byte("a: &x [*x]\n"))
	dir := f.TempDir()
	f.Setenv("XDG_STATE_HOME", dir)
	path := filepath.Join(dir, "config.yaml") // one per fuzzing process
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(path, nil)
		if err != nil {
			var le *LoadError
			if errors.As(err, &le) && len(le.Errs) == 0 {
				t.Fatalf("a LoadError without errors for %q", content)
			}
			if err.Error() == "" {
				t.Fatalf("an empty error for %q", content)
			}
			return
		}
		for _, k := range keys {
			if _, ok := s.Get(k.name); !ok {
				t.Fatalf("%q loaded without key %s", content, k.name)
			}
		}
	})
}
