package nebius

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nebius/gosdk/auth"
	"github.com/nebius/gosdk/operations"
	"github.com/nebius/gosdk/serviceerror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// authHint ends every authentication error.
const authHint = "check the credentials file and that its account may use the project; run `cocalc-hosts providers add " + Name + " --credentials FILE` to replace it"

// defaultRateLimitWait is the wait we ask for when Nebius says "too many
// requests" without a RetryInfo detail.
const defaultRateLimitWait = time.Second

// classify turns an SDK error into a classified provider error. It looks
// at, in order: the Nebius ServiceError details (they say precisely what
// ran out: quota, capacity, or the request rate), then the gRPC code of
// the call or of the failed operation. A google.rpc.RetryInfo detail
// becomes RetryAfter.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return err
	}
	// The SDK reports a failure to get a token (a service account's
	// exchange with IAM) as auth.Error, which deliberately hides its
	// cause from errors.As; classify the cause. One without a gRPC status
	// is local (an unusable key): a credentials problem.
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Cause != nil {
		if grpcStatus(ae.Cause) == nil {
			return &provider.Error{Kind: errkind.Auth, Provider: Name, Op: op,
				Err: &apiError{msg: oneLine(err.Error()) + " (" + authHint + ")", err: err}}
		}
		e := classify(op, ae.Cause).(*provider.Error)
		e.Err = fmt.Errorf("authenticate with Nebius IAM: %w", e.Err)
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: err}
	}

	var st *status.Status
	var opErr *operations.Error
	if errors.As(err, &opErr) {
		// A failed operation: the call went through, the work did not.
		st = opErr.Operation.Status()
	} else {
		st = grpcStatus(err)
	}
	code := codes.Unknown
	if st != nil {
		code = st.Code()
	}
	var details []serviceerror.Detail
	var se *serviceerror.Error
	if errors.As(err, &se) {
		details = se.Details
	}
	retryAfter := retryDelay(st)

	kind, hint, ok := detailKind(details)
	if !ok {
		switch code {
		case codes.Unauthenticated, codes.PermissionDenied:
			kind = errkind.Auth
			hint = authHint
		case codes.ResourceExhausted:
			kind = errkind.RateLimited
		case codes.NotFound:
			kind = errkind.NotFound
		case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition, codes.AlreadyExists:
			kind = errkind.Invalid
		case codes.Unimplemented:
			kind = errkind.Refused
		default:
			// Unavailable, DeadlineExceeded, Internal, Aborted, Unknown,
			// DataLoss, and connection failures.
			kind = errkind.Transient
		}
	}
	if kind == errkind.RateLimited && retryAfter <= 0 {
		retryAfter = defaultRateLimitWait
	}
	msg := describe(err, st, opErr, se)
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return &provider.Error{Kind: kind, Provider: Name, Op: op, RetryAfter: retryAfter, Err: &apiError{msg: msg, err: err}}
}

// apiError is an SDK error described on one line; it still unwraps to
// the SDK's error.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// grpcStatus is the status of the innermost gRPC error in err's chain,
// with the server's own message (status.FromError would put the whole
// wrapped, multi-line text in it).
func grpcStatus(err error) *status.Status {
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		return gs.GRPCStatus()
	}
	return nil
}

// describe says on one line what failed: the operation or call, its
// code and message, the Nebius details, and the request id for support.
func describe(err error, st *status.Status, opErr *operations.Error, se *serviceerror.Error) string {
	var b strings.Builder
	switch {
	case opErr != nil:
		fmt.Fprintf(&b, "operation %s failed: %s: %s", opErr.Operation.ID(), opErr.Code, opErr.Message)
	case st != nil:
		fmt.Fprintf(&b, "%s: %s", st.Code(), st.Message())
	default:
		b.WriteString(oneLine(err.Error()))
	}
	if se != nil {
		for _, d := range se.Details {
			b.WriteString("; ")
			b.WriteString(oneLine(d.String()))
		}
		if se.RequestID != "" {
			fmt.Fprintf(&b, " (request %s)", se.RequestID)
		}
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// detailKind classifies by the Nebius ServiceError details, which name
// what ran out more precisely than the gRPC code does.
func detailKind(details []serviceerror.Detail) (errkind.Kind, string, bool) {
	for _, d := range details {
		switch d.(type) {
		case *serviceerror.QuotaFailure:
			return errkind.Quota, "raise the quota in the Nebius console or choose a smaller machine", true
		case *serviceerror.NotEnoughResources:
			return errkind.Capacity, "Nebius has no capacity for this machine in the region now; try later or another machine", true
		case *serviceerror.TooManyRequests:
			return errkind.RateLimited, "", true
		}
	}
	return "", "", false
}

// retryDelay reads google.rpc.RetryInfo from st, or returns zero.
func retryDelay(st *status.Status) time.Duration {
	if st == nil {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if d := ri.GetRetryDelay().AsDuration(); d > 0 {
				return d
			}
		}
	}
	return 0
}

// notFound makes a classified not-found error.
func notFound(op, format string, args ...any) error {
	return provider.Errorf(errkind.NotFound, Name, op, format, args...)
}
