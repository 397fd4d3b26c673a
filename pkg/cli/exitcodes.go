package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
)

// Exit codes are the scripting contract of cocalc-hosts. They are listed
// in README.md and by `cocalc-hosts help exit-codes`; never renumber them.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other failure
	ExitUsage       = 2   // bad flags, arguments or input values
	ExitNotFound    = 3   // the host (or job) does not exist
	ExitConflict    = 4   // name taken, or the host has pending work
	ExitUnavailable = 5   // the state database cannot be used (unreachable, locked, corrupt)
	ExitActionFail  = 6   // the action ran and failed at the provider (see `logs`)
	ExitRefused     = 7   // refused by the host's state or the provider's capabilities
	ExitInterrupted = 130 // interrupted (Ctrl-C); queued work stays queued
)

// ExitCodeTable documents the codes, in order.
var ExitCodeTable = []struct {
	Code    int
	Meaning string
}{
	{ExitOK, "success"},
	{ExitError, "any other failure"},
	{ExitUsage, "bad flags, arguments or input values"},
	{ExitNotFound, "the host or job does not exist"},
	{ExitConflict, "the name is taken, or the host has pending work"},
	{ExitUnavailable, "the state database cannot be used (unreachable, locked, corrupt)"},
	{ExitActionFail, "the action ran and failed at the provider (see `cocalc-hosts logs HOST`)"},
	{ExitRefused, "refused by the host's state or its provider's capabilities"},
	{ExitInterrupted, "interrupted; queued work stays queued for any worker"},
}

// usageError marks bad input.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErr(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err}
}

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// actionFailedError is a job that ended failed.
type actionFailedError struct{ msg string }

func (e *actionFailedError) Error() string { return e.msg }

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	var ue *usageError
	var inv *hosts.InvalidError
	var ref *hosts.RefusedError
	var af *actionFailedError
	var unk *provider.UnknownError
	var loose *secrets.ModeError
	var status interface{ ExitStatus() int } // a command's own status (project exec)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &status):
		return status.ExitStatus()
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue), errors.As(err, &inv), errors.As(err, &unk), errors.As(err, &loose),
		errors.Is(err, store.ErrBadDSN):
		return ExitUsage
	case errors.As(err, &af):
		return ExitActionFail
	case errors.As(err, &ref), provider.KindOf(err) == provider.KindUnsupported && isProviderErr(err):
		return ExitRefused
	case errors.Is(err, store.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, store.ErrConflict):
		return ExitConflict
	case errors.Is(err, store.ErrUnavailable):
		return ExitUnavailable
	}
	return ExitError
}

func isProviderErr(err error) bool {
	var pe *provider.Error
	return errors.As(err, &pe)
}
