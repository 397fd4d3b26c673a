// Command startup measures the CLI's start-up (issue 14): the median wall
// time of `--version`, `--help` and `list` on an empty SQLite database
// (fresh XDG directories; one warm-up run each, which also makes and
// migrates the database), the peak RSS over all runs, the binary's size,
// and the package initialisation of `--version` (GODEBUG=inittrace=1:
// total clock ms and the costliest packages). It prints one JSON object:
//
//	go run ./bench/startup -bin ./cocalc-hosts -n 20
//
// bench/figures/startup.sh builds the binary as a release does and runs it.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "", "the cocalc-hosts binary to measure")
	n := flag.Int("n", 20, "timed runs of each command (after one warm-up)")
	top := flag.Int("top", 8, "costliest package inits to list")
	flag.Parse()
	if err := run(*bin, *n, *top); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

// pkgInit is one package's line of GODEBUG=inittrace=1.
type pkgInit struct {
	Package string  `json:"package"`
	MS      float64 `json:"ms"`
	Allocs  int     `json:"allocs"`
}

func run(bin string, n, top int) error {
	if bin == "" || n < 1 {
		return fmt.Errorf("usage: startup -bin PATH [-n RUNS]")
	}
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "startup")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}
	for _, d := range []string{"XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"} {
		p := filepath.Join(tmp, strings.ToLower(d))
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		env = append(env, d+"="+p)
	}
	db := filepath.Join(tmp, "state.db")
	commands := []struct {
		name string
		args []string
	}{
		{"version", []string{"--version"}},
		{"help", []string{"--help"}},
		{"list", []string{"list", "--db", db}},
	}
	out := map[string]any{"runs": n, "binary_mb": round(float64(st.Size())/1e6, 1)}
	var peak int64
	for _, c := range commands {
		var ms []float64
		for i := 0; i <= n; i++ {
			d, rss, err := runOnce(bin, c.args, env)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			peak = max(peak, rss)
			if i > 0 { // the first is the warm-up
				ms = append(ms, d)
			}
		}
		slices.Sort(ms)
		out[c.name+"_ms"] = round(ms[len(ms)/2], 2)
	}
	out["peak_rss_mib"] = round(float64(peak)/1024, 1)
	inits, err := initTrace(bin, env)
	if err != nil {
		return err
	}
	total, allocs := 0.0, 0
	for _, p := range inits {
		total += p.MS
		allocs += p.Allocs
	}
	slices.SortFunc(inits, func(a, b pkgInit) int { return cmp.Compare(b.MS, a.MS) })
	out["version_init_ms"] = round(total, 2)
	out["version_init_allocs"] = allocs
	out["version_init_packages"] = len(inits)
	out["version_init_top"] = inits[:min(top, len(inits))]
	return json.NewEncoder(os.Stdout).Encode(out)
}

// runOnce runs bin once and returns its wall time (ms) and peak RSS (KiB).
func runOnce(bin string, args, env []string) (float64, int64, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
	}
	return float64(d.Microseconds()) / 1000, rss, nil
}

// initTrace runs `bin --version` with GODEBUG=inittrace=1 and returns each
// package's initialisation ("init PKG @T ms, CLOCK ms clock, B bytes, A allocs").
func initTrace(bin string, env []string) ([]pkgInit, error) {
	cmd := exec.Command(bin, "--version")
	cmd.Env = append(env, "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("inittrace: %w: %s", err, stderr.Bytes())
	}
	return parseInitTrace(stderr.Bytes()), nil
}

// parseInitTrace reads the "init ..." lines of GODEBUG=inittrace=1 output.
func parseInitTrace(b []byte) []pkgInit {
	var inits []pkgInit
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// init PKG @0.01 ms, 0.003 ms clock, 0 bytes, 0 allocs
		if len(f) < 11 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		ms, err1 := strconv.ParseFloat(f[4], 64)
		allocs, err2 := strconv.Atoi(f[9])
		if err1 != nil || err2 != nil {
			continue
		}
		inits = append(inits, pkgInit{Package: f[1], MS: ms, Allocs: allocs})
	}
	return inits
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
