package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// This package's tests (SSH test VMs, real hosts, every script in three
// modes) take most of CI, and most of their time they wait on disks,
// podman and SSH. They run -parallel at a time as usual, but longest
// first: Go starts waiting parallel tests in no particular order, and a
// long test started last runs on alone at the end. So slots takes over
// -parallel (TestMain sets Go's own limit out of the way) and admits the
// waiting test with the most expected seconds whenever one ends.
var slots *gate

// expectedSeconds are the long tests' and scripts' times on 2 cores
// (slot-seconds from `go test -json`, rounded; a script's are the same in
// each mode). Only their order matters; anything not here counts as
// shortest.
var expectedSeconds = map[string]int{
	"TestMoveKilledAtEachPhase":     270,
	"project_dashboard":             260,
	"project_move":                  230,
	"TestSSHProjectsSurviveUpgrade": 180,
	"project_backup_remote":         170,
	"project_access":                120,
	"project_basic":                 120,
	"project_backup":                100,
	"TestReverseHost":               100,
	"project_idle":                  90,
	"project_ingress":               80,
	"TestSSHLifecyclePostgres":      80,
	"TestSSHIngress":                75,
	"project_tour":                  65,
	"project_start_fails":           60,
	"TestCloudE2EPostgres":          60,
	"TestSSHLifecycleSQLite":        55,
	"project_shell":                 45,
	"TestCloudE2ESQLite":            40,
	"local_lifecycle":               35,
	"catalog_clouds":                35,
	"TestSSHChangedHostKey":         30,
}

// takeOverParallel makes slots as wide as -parallel and lifts Go's own
// limit, so that the order of admission is slots'. Called by TestMain
// after the flags are parsed.
func takeOverParallel() {
	n := 2
	if f := flag.Lookup("test.parallel"); f != nil {
		if v, err := strconv.Atoi(f.Value.String()); err == nil && v > 0 {
			n = v
		}
		f.Value.Set("1000") //nolint:errcheck // a valid int
	}
	slots = &gate{free: n}
}

// parallel is t.Parallel for this package's tests: it returns once t
// may run. (Scripts take their slot in their Setup: scriptSlot.)
func parallel(t *testing.T) {
	t.Parallel()
	t.Cleanup(slots.acquire(expectedSeconds[t.Name()]))
}

// scriptSlot waits for a slot for the script env runs, and gives it back
// after everything else the script defers (its hosts' cleanup).
func scriptSlot(env *testscript.Env) {
	name := strings.TrimSuffix(filepath.Base(env.T().(testing.TB).Name()), ".txtar")
	env.Defer(slots.acquire(expectedSeconds[name]))
}

// gate is a counting semaphore that admits its heaviest waiter first
// (the first to come among equals).
type gate struct {
	mu      sync.Mutex
	free    int
	seq     int
	waiting []*waiter
}

type waiter struct {
	weight, seq int
	admit       chan struct{}
}

// acquire waits for a slot and returns the function that gives it back.
func (g *gate) acquire(weight int) (release func()) {
	g.mu.Lock()
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return g.release
	}
	g.seq++
	w := &waiter{weight: weight, seq: g.seq, admit: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(g.waiting, w, func(a, b *waiter) int {
		if a.weight != b.weight {
			return b.weight - a.weight // heaviest first
		}
		return a.seq - b.seq
	})
	g.waiting = slices.Insert(g.waiting, i, w)
	g.mu.Unlock()
	<-w.admit
	return g.release
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) > 0 {
		w := g.waiting[0]
		g.waiting = g.waiting[1:]
		close(w.admit)
		return
	}
	g.free++
}

// The gate admits the heaviest waiter first, and equals in the order they
// came.
func TestGateAdmitsHeaviestFirst(t *testing.T) {
	g := &gate{free: 1}
	hold := g.acquire(0)
	admitted := make(chan string, 4)
	for i, w := range []struct {
		name   string
		weight int
	}{{"light", 1}, {"heavy", 9}, {"middle", 5}, {"middle too", 5}} {
		go func() {
			release := g.acquire(w.weight)
			admitted <- w.name
			release()
		}()
		// Each waits before the next comes (so "middle" comes first).
		eventually(t, 10*time.Second, "waiter queued", func() (bool, string) {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.waiting) == i+1, fmt.Sprint(len(g.waiting), " waiting")
		})
	}
	hold()
	var got []string
	for range 4 {
		got = append(got, <-admitted)
	}
	if want := []string{"heavy", "middle", "middle too", "light"}; !slices.Equal(got, want) {
		t.Fatalf("admitted %v, want %v", got, want)
	}
	// The last one gives its slot back after it was counted admitted.
	eventually(t, 10*time.Second, "every slot given back", func() (bool, string) {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.free == 1, fmt.Sprint(g.free, " free")
	})
}
