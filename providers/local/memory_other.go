//go:build !linux

package local

import "errors"

// totalMemory: local hosts need Linux (btrfs, podman, /proc).
func totalMemory() (uint64, error) {
	return 0, errors.New("local hosts need Linux")
}
