package cli

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/muesli/cancelreader"
	"golang.org/x/term"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/ptytest"
)

// A shell session's reader of the terminal, closed while a read waits
// for a key (the shell exited; the session's stdin loop is back in a
// read), leaves the next key typed to whoever reads the terminal next:
// the dashboard the shell returns to. Closed too early, the read stays
// in the kernel's wait and takes that key. Many rounds: that happened in
// some, not all.
func TestTerminalInputCloseLeavesTheNextKey(t *testing.T) {
	m, tty, _, err := ptytest.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer tty.Close()
	old, err := term.MakeRaw(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer term.Restore(int(tty.Fd()), old) //nolint:errcheck

	type read struct {
		data string
		err  error
	}
	for round := range 30 {
		in, err := newTerminalInput(tty)
		if err != nil {
			t.Fatal(err)
		}
		// The session's stdin loop (agentapi.Session's): read, pass on,
		// until an error.
		reads := make(chan read, 4)
		var waiting atomic.Bool
		go func() {
			buf := make([]byte, 64)
			for {
				waiting.Store(true)
				n, err := in.Read(buf)
				waiting.Store(false)
				reads <- read{string(buf[:n]), err}
				if err != nil {
					return
				}
			}
		}()
		if _, err := m.WriteString("exit\r"); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, reads); r.data != "exit\r" || r.err != nil {
			t.Fatalf("round %d: the session read %q, %v; want the shell's input", round, r.data, r.err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !waiting.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the session never read again", round)
			}
			time.Sleep(time.Millisecond)
		}
		// The shell exited: the session ends, then a key for the dashboard.
		if err := in.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		if _, err := m.WriteString("3"); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, reads); r.data != "" || !errors.Is(r.err, cancelreader.ErrCanceled) {
			t.Fatalf("round %d: after the session ended its read returned %q, %v; want no data and ErrCanceled", round, r.data, r.err)
		}
		buf := make([]byte, 64)
		n, err := tty.Read(buf)
		if err != nil || string(buf[:n]) != "3" {
			t.Fatalf("round %d: the next reader got %q, %v; want the key 3", round, buf[:n], err)
		}
	}
}

func receive[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no read returned within 10s")
	}
	var zero T
	return zero
}
