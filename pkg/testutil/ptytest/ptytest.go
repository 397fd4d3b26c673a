// Package ptytest opens pseudo-terminals for tests of programs that need
// a terminal (shells, the dashboard).
package ptytest

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Open returns a new pty's master and its terminal (the slave), and the
// terminal's path.
func Open() (master, tty *os.File, path string, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, "", err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, "", err
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, "", err
	}
	path = fmt.Sprintf("/dev/pts/%d", n)
	s, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, "", err
	}
	return m, s, path, nil
}

// SetSize sets the terminal's size in cells.
func SetSize(master *os.File, cols, rows int) error {
	return unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
}

// Modes returns the terminal's line discipline settings.
func Modes(tty *os.File) (*unix.Termios, error) {
	return unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
}
