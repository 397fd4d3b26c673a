//go:build !linux

package agent

import (
	"errors"
	"os"
)

// openPTY: project hosts run Linux; the agent built for other systems (the
// CLI on a Mac) has no terminals to offer.
func openPTY() (master, slave *os.File, err error) {
	return nil, nil, errors.New("interactive project shells need a Linux host")
}
