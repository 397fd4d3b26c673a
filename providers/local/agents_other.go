//go:build !linux

package local

import "errors"

// findAgents: local hosts need Linux (btrfs, podman, /proc).
func findAgents(config string) ([]proc, error) {
	return nil, errors.New("local hosts need Linux: their agents are found in /proc")
}

func runsAgentOf(pid int, config string) bool { return false }

func leftInSessions(agents []proc) []proc { return nil }
