package cli

import (
	"context"
	"errors"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// Exit codes are the scripting contract of cocalc-hosts. Each error kind
// (pkg/errkind) has exactly one code. They are listed in README.md and by
// `cocalc-hosts help exit-codes`; never renumber them.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other failure
	ExitUsage       = 2   // bad flags, arguments or input values
	ExitNotFound    = 3   // the host (or job) does not exist
	ExitConflict    = 4   // name taken, or the host has pending work
	ExitUnavailable = 5   // the state database cannot be used (unreachable, locked, corrupt)
	ExitActionFail  = 6   // the action ran and failed at the provider (see `logs`)
	ExitRefused     = 7   // refused by the host's state or the provider's capabilities
	ExitAuth        = 8   // credentials missing or rejected
	ExitForbidden   = 9   // credentials not allowed to do this
	ExitQuota       = 10  // an account limit was reached
	ExitCapacity    = 11  // no capacity there now
	ExitRateLimited = 12  // the provider asked to slow down
	ExitTransient   = 13  // a temporary failure
	ExitUnhealthy   = 14  // `status` found a problem
	ExitInterrupted = 130 // interrupted (Ctrl-C); queued work stays queued
)

// ExitCodeTable documents the codes, in order, with the kind each stands
// for (none for success).
var ExitCodeTable = []struct {
	Code    int
	Kind    errkind.Kind
	Meaning string
}{
	{ExitOK, "", "success"},
	{ExitError, errkind.Internal, "any other failure"},
	{ExitUsage, errkind.Invalid, "bad flags, arguments or input values"},
	{ExitNotFound, errkind.NotFound, "the host, project or job does not exist"},
	{ExitConflict, errkind.Conflict, "the name is taken, or the host has pending work"},
	{ExitUnavailable, errkind.Unavailable, "the state database cannot be used (unreachable, locked, corrupt)"},
	{ExitActionFail, errkind.Failed, "the action ran and failed at the provider (see `cocalc-hosts logs HOST`)"},
	{ExitRefused, errkind.Refused, "refused by the host's state or its provider's capabilities"},
	{ExitAuth, errkind.Auth, "credentials are missing or were rejected (cloud, SSH); fix them and retry"},
	{ExitForbidden, errkind.Forbidden, "the credentials are not allowed to do this"},
	{ExitQuota, errkind.Quota, "an account limit at the provider was reached"},
	{ExitCapacity, errkind.Capacity, "the provider has no capacity there now; try another region or later"},
	{ExitRateLimited, errkind.RateLimited, "the provider asked to slow down; retry later"},
	{ExitTransient, errkind.Transient, "a temporary failure (network, timeout, server error); retry"},
	{ExitUnhealthy, "", "`cocalc-hosts status` found a problem (it lists them)"},
	{ExitInterrupted, errkind.Canceled, "interrupted; queued work stays queued for any worker"},
}

// usageErr marks err as bad input.
func usageErr(err error) error { return errkind.Wrap(errkind.Invalid, err) }

func usagef(format string, args ...any) error {
	return errkind.Errorf(errkind.Invalid, format, args...)
}

// exitCode maps an error to the documented exit code: a command's own
// status (project exec) or the code of the error's kind.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var status interface{ ExitStatus() int }
	if errors.As(err, &status) {
		return status.ExitStatus()
	}
	if errors.Is(err, context.Canceled) {
		// However a cancelled call was classified on its way up, the
		// user (or a signal) ended it.
		return ExitInterrupted
	}
	k := errkind.Of(err)
	for _, e := range ExitCodeTable {
		if e.Kind == k {
			return e.Code
		}
	}
	return ExitError
}
