package gcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/auth"
	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// maxOperationWait bounds the wait for one operation.
const maxOperationWait = 15 * time.Minute

// Operation error codes that mean "no capacity here now": the caller may
// try another zone or later. GCE reports them on the operation of an
// insert or start, not on the HTTP response.
var capacityCodes = map[string]bool{
	"ZONE_RESOURCE_POOL_EXHAUSTED":              true,
	"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": true,
	"RESOURCE_POOL_EXHAUSTED":                   true,
	"REGION_RESOURCE_POOL_EXHAUSTED":            true,
	"STOCKOUT":                                  true,
}

var quotaCodes = map[string]bool{
	"QUOTA_EXCEEDED":                  true,
	"QUOTA_LIMIT":                     true,
	"REGION_QUOTA_EXCEEDED":           true,
	"ZONE_QUOTA_EXCEEDED":             true,
	"GLOBAL_QUOTA_EXCEEDED":           true,
	"PROJECT_QUOTA_EXCEEDED":          true,
	"CPUS_QUOTA_EXCEEDED":             true,
	"PREEMPTIBLE_CPUS_QUOTA_EXCEEDED": true,
}

// classify turns an error from the compute or billing client into a
// classified provider error. It never returns nil for a non-nil err.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return err
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return classifyHTTP(op, ge)
	}
	// The token endpoint refused the key (deleted, disabled, or its
	// clock is off): no retry helps.
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Response != nil {
		if c := ae.Response.StatusCode; c >= 400 && c < 500 && c != http.StatusTooManyRequests {
			return &provider.Error{Kind: errkind.Auth, Provider: Name, Op: op,
				Err: fmt.Errorf("%w (the service-account key was refused; to replace it run: cocalc-hosts providers add %s --credentials FILE)", err, Name)}
		}
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: err, RetryAfter: retryAfter(ae.Response.Header)}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: fmt.Errorf("request timed out or was cancelled: %w", err)}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: err}
	}
	// Anything else is a transport failure (connection reset, EOF, a body
	// that did not parse): retrying is the right answer.
	return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: err}
}

func classifyHTTP(op string, ge *googleapi.Error) error {
	reasons := make([]string, 0, len(ge.Errors))
	for _, e := range ge.Errors {
		reasons = append(reasons, e.Reason)
	}
	text := ge.Message
	if text == "" {
		text = http.StatusText(ge.Code)
	}
	wrap := func(kind errkind.Kind) error {
		return &provider.Error{Kind: kind, Provider: Name, Op: op, Err: fmt.Errorf("HTTP %d: %s", ge.Code, text), RetryAfter: retryAfter(ge.Header)}
	}
	has := func(rs ...string) bool {
		for _, r := range reasons {
			for _, want := range rs {
				if strings.EqualFold(r, want) {
					return true
				}
			}
		}
		return false
	}
	upper := strings.ToUpper(text)
	switch {
	case ge.Code == http.StatusTooManyRequests, has("rateLimitExceeded", "userRateLimitExceeded"):
		return wrap(errkind.RateLimited)
	case has("quotaExceeded", "limitExceeded") || containsAny(upper, quotaCodes):
		return wrap(errkind.Quota)
	case containsAny(upper, capacityCodes) || strings.Contains(upper, "DOES NOT HAVE ENOUGH RESOURCES"):
		return wrap(errkind.Capacity)
	case ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden:
		e := wrap(errkind.Auth).(*provider.Error)
		e.Err = fmt.Errorf("%w (check the service account key and its roles; to replace it run: cocalc-hosts providers add %s --credentials FILE)", e.Err, Name)
		return e
	case ge.Code == http.StatusNotFound:
		return wrap(errkind.NotFound)
	case has("resourceNotReady") || ge.Code == http.StatusConflict && !has("alreadyExists") || ge.Code == http.StatusPreconditionFailed:
		// The resource is busy with another operation: later works.
		return wrap(errkind.Transient)
	case ge.Code >= 500 || ge.Code == http.StatusRequestTimeout:
		return wrap(errkind.Transient)
	case ge.Code >= 400:
		return wrap(errkind.Invalid)
	}
	return wrap(errkind.Transient)
}

func containsAny(s string, codes map[string]bool) bool {
	for c := range codes {
		if strings.Contains(s, c) {
			return true
		}
	}
	return false
}

// isAlreadyExists reports a 409 for a resource name that is taken.
func isAlreadyExists(err error) bool {
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusConflict {
		return false
	}
	for _, e := range ge.Errors {
		if e.Reason == "alreadyExists" {
			return true
		}
	}
	return strings.Contains(strings.ToLower(ge.Message), "already exists")
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// opError classifies the error of a finished operation. Wait in the SDK
// only reports operations whose httpErrorStatusCode is set; an operation
// that is DONE with an error but no status code looks successful, so
// every operation's Proto().GetError() is checked here.
func opError(op string, o *computepb.Operation) error {
	errs := o.GetError().GetErrors()
	status := o.GetHttpErrorStatusCode()
	if len(errs) == 0 && (status == 0 || (status >= 200 && status < 300)) {
		return nil
	}
	var codes, msgs []string
	for _, e := range errs {
		codes = append(codes, e.GetCode())
		msgs = append(msgs, strings.TrimSpace(e.GetCode()+": "+e.GetMessage()))
	}
	msg := strings.Join(msgs, "; ")
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d %s", status, o.GetHttpErrorMessage())
	}
	kind := errkind.Transient
	switch {
	case anyIn(codes, capacityCodes):
		kind = errkind.Capacity
		msg += " (no capacity in this zone now; try another zone or later)"
	case anyIn(codes, quotaCodes):
		kind = errkind.Quota
	case anyIn(codes, map[string]bool{"RESOURCE_NOT_FOUND": true, "NOT_FOUND": true}):
		kind = errkind.NotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		kind = errkind.Auth
	case status == http.StatusTooManyRequests:
		kind = errkind.RateLimited
	case status >= 400 && status < 500 && status != http.StatusConflict && status != http.StatusRequestTimeout:
		kind = errkind.Invalid
	}
	return &provider.Error{Kind: kind, Provider: Name, Op: op, Err: fmt.Errorf("operation %s failed: %s", o.GetName(), msg)}
}

func anyIn(codes []string, set map[string]bool) bool {
	for _, c := range codes {
		if set[c] {
			return true
		}
	}
	return false
}

// wait polls op until it is DONE and returns its classified error. Polls
// that fail transiently are repeated: reading an operation is harmless,
// and giving up would leave the caller unsure whether the change
// happened.
func (p *Provider) wait(ctx context.Context, op string, o *compute.Operation) error {
	// GCE finishes operations in seconds to minutes; one still running
	// after this is reported, and the retried action looks again.
	ctx, cancel := context.WithTimeout(ctx, maxOperationWait)
	defer cancel()
	for !o.Done() {
		t := time.NewTimer(p.opts.pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return classify(op, fmt.Errorf("waiting for operation %s: %w", o.Name(), ctx.Err()))
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, p.opts.requestTimeout)
		err := o.Poll(rctx)
		cancel()
		if err != nil {
			if o.Done() {
				// Poll reports a DONE operation's HTTP error itself.
				break
			}
			if ce := classify(op, err); errkind.Retryable(ce) && ctx.Err() == nil {
				continue
			}
			return classify(op, fmt.Errorf("polling operation %s: %w", o.Name(), err))
		}
	}
	return opError(op, o.Proto())
}
