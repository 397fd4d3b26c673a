//go:build !linux

package agent

import "errors"

// ServeSFTP needs Linux.
func ServeSFTP(string) error { return errors.New("sftp: needs Linux") }
