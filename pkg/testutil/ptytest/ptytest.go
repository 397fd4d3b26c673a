// Package ptytest opens pseudo-terminals for tests of programs that need
// a terminal (shells, the dashboard).
package ptytest

import (
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Open returns a new pty's master and its terminal (the slave), and the
// terminal's path.
func Open() (master, tty *os.File, path string, err error) {
	m, t, err := pty.Open()
	if err != nil {
		return nil, nil, "", err
	}
	return m, t, t.Name(), nil
}

// SetSize sets the terminal's size in cells.
func SetSize(master *os.File, cols, rows int) error {
	return unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
}

// Modes returns the terminal's line discipline settings.
func Modes(tty *os.File) (*unix.Termios, error) {
	return unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
}
