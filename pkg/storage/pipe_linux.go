package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// widen asks Linux to let pipe w hold n bytes; a narrow pipe is only
// slower, so a refusal is no error.
func widen(w *os.File, n int) {
	if rc, err := w.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { //nolint:errcheck
			unix.FcntlInt(fd, unix.F_SETPIPE_SZ, n) //nolint:errcheck
		})
	}
}
