// Package errkind is the one vocabulary of error kinds that every layer of
// cocalc-hosts uses: the store, the queue, providers, domain services and
// the command layer classify failures with these kinds, and callers decide
// on them with Of or Is. Each kind has a stable string code (its value),
// so it survives a trip over the wire: a server writes the code, a client
// reads it back with Parse and rebuilds an error of the same kind. The
// command layer maps each kind to one exit code (pkg/cli/exitcodes.go) and
// HTTPStatus maps it to one HTTP status.
//
// The package is a leaf: it imports only the standard library.
package errkind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Kind classifies a failure. Its value is the stable code used on the
// wire and in JSON; never change a value.
type Kind string

const (
	// Internal is anything unclassified: a bug, or a failure nobody
	// anticipated.
	Internal Kind = "internal"
	// Invalid is bad input: flags, arguments, configuration or values.
	Invalid Kind = "invalid"
	// NotFound: the thing named does not exist.
	NotFound Kind = "not_found"
	// Conflict: the name is taken, or the subject has pending work.
	Conflict Kind = "conflict"
	// Unavailable: the state database (or, for a client, the server)
	// cannot be used: unreachable, locked or corrupt.
	Unavailable Kind = "unavailable"
	// Failed: an action ran and failed (its job ended failed).
	Failed Kind = "failed"
	// Refused: the subject's state or its provider's abilities do not
	// allow the action (e.g. stop on a cloud that cannot stop).
	Refused Kind = "refused"
	// Canceled: the caller gave up (Ctrl-C, a closed request).
	Canceled Kind = "canceled"
	// Auth: credentials are missing or were rejected (a cloud API key,
	// an SSH key, an API token).
	Auth Kind = "auth"
	// Forbidden: the credentials are valid but not allowed to do this.
	Forbidden Kind = "forbidden"
	// Quota: an account limit was reached; retrying will not help.
	Quota Kind = "quota"
	// Capacity: no capacity there now; try another place or later.
	Capacity Kind = "capacity"
	// RateLimited: the other side asked to slow down.
	RateLimited Kind = "rate_limited"
	// Transient: a temporary failure (network, timeout, 5xx); retry.
	Transient Kind = "transient"
)

// kinds lists every kind with its HTTP status, in a stable order.
var kinds = []struct {
	kind   Kind
	status int
}{
	{Internal, http.StatusInternalServerError},
	{Invalid, http.StatusBadRequest},
	{NotFound, http.StatusNotFound},
	{Conflict, http.StatusConflict},
	{Unavailable, http.StatusServiceUnavailable},
	// The action reached something beyond the server (a cloud, a host)
	// and that failed.
	{Failed, http.StatusBadGateway},
	// Well-formed and understood, but not possible in the current state.
	{Refused, http.StatusUnprocessableEntity},
	// nginx's "client closed request"; no standard status exists.
	{Canceled, 499},
	{Auth, http.StatusUnauthorized},
	{Forbidden, http.StatusForbidden},
	{Quota, http.StatusTooManyRequests},
	{Capacity, http.StatusServiceUnavailable},
	{RateLimited, http.StatusTooManyRequests},
	{Transient, http.StatusServiceUnavailable},
}

// All returns every kind, Internal first.
func All() []Kind {
	out := make([]Kind, len(kinds))
	for i, k := range kinds {
		out[i] = k.kind
	}
	return out
}

// Parse returns the kind whose code is s. An unknown code (a newer peer's
// kind) is Internal and false.
func Parse(s string) (Kind, bool) {
	for _, k := range kinds {
		if string(k.kind) == s {
			return k.kind, true
		}
	}
	return Internal, false
}

// HTTPStatus is the status a server answers with for an error of kind k.
// Several kinds share a status; the body carries the kind's code.
func (k Kind) HTTPStatus() int {
	for _, e := range kinds {
		if e.kind == k {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

func (k Kind) String() string { return string(k) }

// Kinded is implemented by errors that know their kind. Error types that
// carry more fields (a provider's error, a busy host) implement it instead
// of wrapping an *Error.
type Kinded interface {
	error
	ErrorKind() Kind
}

// Error is an error of a kind. Its message is the wrapped error's: the
// kind never adds words to what users read.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() error   { return e.Err }
func (e *Error) ErrorKind() Kind { return e.Kind }

// New returns an error of kind k with message msg.
func New(k Kind, msg string) error { return &Error{Kind: k, Err: errors.New(msg)} }

// Errorf formats like fmt.Errorf (%w included) and gives the result kind k.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// Wrap gives err kind k, keeping its message; nil stays nil.
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// Of returns err's kind: that of the outermost error in its chain that
// knows its kind; otherwise Canceled for context.Canceled, Transient for
// deadlines and network errors, and Internal for anything else (and nil).
func Of(err error) Kind {
	if err == nil {
		return Internal
	}
	var k Kinded
	if errors.As(err, &k) {
		return k.ErrorKind()
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) {
		return Transient
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && Of(err) == k }

// Retryable reports whether retrying the same call later may succeed:
// transient failures, rate limits, missing capacity and a state database
// that went away, and unclassified errors too, so that a gap in
// classification costs a few retries (up to the caller's attempt limit)
// rather than a wrongly abandoned action.
func Retryable(err error) bool {
	switch Of(err) {
	case Transient, RateLimited, Capacity, Unavailable, Internal, Canceled:
		return true
	}
	return false
}

// RetryAfter returns the delay that err's source asked for, or zero.
func RetryAfter(err error) time.Duration {
	var d interface{ RetryDelay() time.Duration }
	if errors.As(err, &d) {
		return d.RetryDelay()
	}
	return 0
}

// NotFoundError says that no Type named Name exists. It is an error of
// kind NotFound that keeps the two apart, so that the caller who knows
// where such things are listed (the command layer) can say so.
type NotFoundError struct {
	Type string // "host", "project", "job"
	Name string // the id or name asked for
}

func (e *NotFoundError) Error() string   { return fmt.Sprintf("no %s %q", e.Type, e.Name) }
func (e *NotFoundError) ErrorKind() Kind { return NotFound }
