// Package lazyre compiles regular expressions on first use instead of at
// package initialisation, which every command pays for (issue 14: a
// compiled regexp is tens of allocations; `--version` would compile every
// package's).
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call (panicking,
// as regexp.MustCompile, if it does not compile) and returns the same
// Regexp on every call.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
