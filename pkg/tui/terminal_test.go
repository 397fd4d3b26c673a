package tui

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/vt"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/ptytest"
)

// panicSource panics in its second read, as a bug in a source would.
type panicSource struct {
	fleetSource
	reads atomic.Int32
}

func (s *panicSource) Fleet(ctx context.Context) (Fleet, error) {
	if s.reads.Add(1) > 1 {
		panic("a bug in the source")
	}
	return s.fleetSource.Fleet(ctx)
}

// A panic, in a read or in the dashboard, ends the program with the
// terminal as it was: cooked mode and echo, main screen, cursor shown.
func TestPanicLeavesTerminalClean(t *testing.T) {
	m, tty, _, err := ptytest.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer m.Close()
	defer tty.Close()
	if err := ptytest.SetSize(m, 100, 30); err != nil {
		t.Fatal(err)
	}
	before, err := ptytest.Modes(tty)
	if err != nil {
		t.Fatal(err)
	}
	emu := vt.NewEmulator(100, 30)
	var mu sync.Mutex
	var raw strings.Builder
	go io.Copy(m, emu) //nolint:errcheck // the emulator's answers to queries
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			mu.Lock()
			raw.Write(buf[:n])
			emu.Write(buf[:n]) //nolint:errcheck
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	src := &panicSource{fleetSource: *testFleet()}
	p := tea.NewProgram(New(src, Options{Refresh: time.Hour}), tea.WithInput(tty), tea.WithOutput(tty), tea.WithoutSignalHandler())
	done := make(chan error, 1)
	go func() { _, err := p.Run(); done <- err }()
	// Once the hosts are on screen, ctrl+r reads again: the panic.
	shown := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		up := emu.IsAltScreen() && strings.Contains(emu.String(), "gpu1")
		mu.Unlock()
		if up {
			break
		}
		if time.Now().After(shown) {
			t.Fatal("the dashboard never showed the hosts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := m.Write([]byte{0x12}); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatal("the program did not end after the panic")
	}
	if !errors.Is(err, tea.ErrProgramPanic) {
		t.Fatalf("Run: %v, want a caught panic", err)
	}
	after, err := ptytest.Modes(tty)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("terminal modes not restored: lflag %#x, was %#x", after.Lflag, before.Lflag)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		s := raw.String()
		alt, hidden := emu.IsAltScreen(), emu.CursorHidden()
		mu.Unlock()
		entered := strings.Contains(s, "\x1b[?1049h")
		if entered && !alt && !hidden && strings.LastIndex(s, "\x1b[?2004h") < strings.LastIndex(s, "\x1b[?2004l") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminal not restored: entered alt screen %v, still in it %v, cursor hidden %v", entered, alt, hidden)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
