package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrorKind classifies a provider failure so callers can decide on it.
type ErrorKind string

const (
	KindAuth        ErrorKind = "auth"         // bad or missing credentials: never retried
	KindQuota       ErrorKind = "quota"        // account limit reached: never retried
	KindCapacity    ErrorKind = "capacity"     // no capacity here now: try elsewhere or later
	KindNotFound    ErrorKind = "not_found"    // the instance or resource does not exist
	KindRateLimited ErrorKind = "rate_limited" // slow down; RetryAfter says how long
	KindTransient   ErrorKind = "transient"    // 5xx, timeouts, resets: retry with backoff
	KindInvalid     ErrorKind = "invalid"      // the request itself is wrong: never retried
	KindUnsupported ErrorKind = "unsupported"  // the provider cannot do this at all
)

// Error is a classified provider error.
type Error struct {
	Kind       ErrorKind
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

// Errorf makes a classified error.
func Errorf(kind ErrorKind, provider, op, format string, args ...any) *Error {
	return &Error{Kind: kind, Provider: provider, Op: op, Err: fmt.Errorf(format, args...)}
}

// KindOf returns the classification of err. Unclassified context deadlines
// and network errors count as transient; anything else unknown is treated
// as transient too, so that a bug in classification costs a few retries
// rather than a wrongly abandoned action — but only up to the job's
// attempt limit.
func KindOf(err error) ErrorKind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	if errors.Is(err, context.Canceled) {
		return KindTransient
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return KindTransient
	}
	return KindTransient
}

// IsRetryable reports whether retrying the same call later may succeed.
func IsRetryable(err error) bool {
	switch KindOf(err) {
	case KindTransient, KindRateLimited, KindCapacity:
		return true
	}
	return false
}

// IsNotFound reports whether err says the thing does not exist.
func IsNotFound(err error) bool { return KindOf(err) == KindNotFound }

// RetryAfter returns the delay the provider asked for, or zero.
func RetryAfter(err error) time.Duration {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}
