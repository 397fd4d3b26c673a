// Package secrets reads secrets. They live only in files that nobody but
// their owner can read; never in environment variables, argv or logs.
package secrets

import (
	"bytes"
	"fmt"
	"os"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// CheckMode refuses a file readable or writable by group or others.
func CheckMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("secret file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return &ModeError{Path: path, Mode: perm}
	}
	return nil
}

// ModeError is a secret file that others can read or write.
type ModeError struct {
	Path string
	Mode os.FileMode
}

// ErrorKind: the file's mode is the user's to fix.
func (e *ModeError) ErrorKind() errkind.Kind { return errkind.Invalid }

func (e *ModeError) Error() string {
	return fmt.Sprintf("secret file %s has mode %04o, which lets others read it; run: chmod 600 %s", e.Path, e.Mode, e.Path)
}

// Read returns the trimmed contents of a secret file after checking its mode.
func Read(path string) ([]byte, error) {
	if err := CheckMode(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	return bytes.TrimSpace(b), nil
}

// Write creates or replaces path with data, mode 0600, atomically.
func Write(path string, data []byte) error {
	tmp, err := os.CreateTemp(dirOf(path), ".secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i+1]
		}
	}
	return "."
}
