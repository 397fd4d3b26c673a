//go:build !linux

package storage

import "os"

// widen: only Linux sizes pipes; elsewhere they keep their size (the
// storage runs on Linux hosts; other systems only build the CLI).
func widen(*os.File, int) {}
