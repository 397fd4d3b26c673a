//go:build !linux

package storage

import "os"

// syncfs: only Linux hosts keep projects; elsewhere it does nothing.
func syncfs(*os.File) {}
