package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncfs writes back what is dirty on f's filesystem; a failure only
// leaves it for later.
func syncfs(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { //nolint:errcheck
			unix.Syncfs(int(fd)) //nolint:errcheck
		})
	}
}
