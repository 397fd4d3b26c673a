package provider

import (
	"fmt"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Error is a classified provider error: a kind from the one vocabulary
// (pkg/errkind), the provider and operation it came from, and the delay
// the provider asked for.
type Error struct {
	Kind       errkind.Kind
	Provider   string
	Op         string
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Op != "" {
		return fmt.Sprintf("%s %s: %s", e.Provider, e.Op, msg)
	}
	return fmt.Sprintf("%s: %s", e.Provider, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorKind makes the error's kind visible to errkind.Of.
func (e *Error) ErrorKind() errkind.Kind { return e.Kind }

// RetryDelay makes the requested delay visible to errkind.RetryAfter.
func (e *Error) RetryDelay() time.Duration { return e.RetryAfter }

// Errorf makes a classified error.
func Errorf(kind errkind.Kind, provider, op, format string, args ...any) *Error {
	return &Error{Kind: kind, Provider: provider, Op: op, Err: fmt.Errorf(format, args...)}
}
