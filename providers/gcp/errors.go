package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
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

// classify makes sure err is a classified provider error. The REST
// client classifies what it returns; this covers the rest (a context
// that ended between calls). It never returns nil for a non-nil err.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: fmt.Errorf("request timed out or was cancelled: %w", err)}
	}
	// Anything else is a transport failure (connection reset, EOF):
	// retrying is the right answer.
	return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: err}
}

// classifyHTTP classifies an error reply. The provider error wraps the
// apiError, so isAlreadyExists can still see the reasons.
func classifyHTTP(op string, ae *apiError) error {
	wrap := func(kind errkind.Kind) *provider.Error {
		return &provider.Error{Kind: kind, Provider: Name, Op: op, Err: ae, RetryAfter: restclient.ParseRetryAfter(ae.Header.Get("Retry-After"), time.Now())}
	}
	upper := strings.ToUpper(ae.Message)
	switch {
	case ae.Code == http.StatusTooManyRequests, ae.has("rateLimitExceeded", "userRateLimitExceeded"):
		return wrap(errkind.RateLimited)
	case ae.has("quotaExceeded", "limitExceeded") || containsAny(upper, quotaCodes):
		return wrap(errkind.Quota)
	case containsAny(upper, capacityCodes) || strings.Contains(upper, "DOES NOT HAVE ENOUGH RESOURCES"):
		return wrap(errkind.Capacity)
	case ae.Code == http.StatusUnauthorized || ae.Code == http.StatusForbidden:
		e := wrap(errkind.Auth)
		e.Err = fmt.Errorf("%w (check the service account key and its roles; to replace it run: cocalc-hosts providers add %s --credentials FILE)", ae, Name)
		return e
	case ae.Code == http.StatusNotFound:
		return wrap(errkind.NotFound)
	case ae.has("resourceNotReady") || ae.Code == http.StatusConflict && !ae.has("alreadyExists") || ae.Code == http.StatusPreconditionFailed:
		// The resource is busy with another operation: later works.
		return wrap(errkind.Transient)
	case ae.Code >= 500 || ae.Code == http.StatusRequestTimeout:
		return wrap(errkind.Transient)
	case ae.Code >= 400:
		return wrap(errkind.Invalid)
	}
	return wrap(errkind.Transient)
}

// tokenError classifies a failure to get an access token. The token
// endpoint refusing the key (deleted, disabled, or its clock is off) is
// not helped by a retry; anything else (the endpoint unreachable or
// overloaded) is.
func tokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		if c := re.Response.StatusCode; c >= 400 && c < 500 && c != http.StatusTooManyRequests && c != http.StatusRequestTimeout {
			return &provider.Error{Kind: errkind.Auth, Provider: Name, Op: op,
				Err: fmt.Errorf("the token endpoint refused the service-account key (HTTP %d: %s); to replace it run: cocalc-hosts providers add %s --credentials FILE", c, tokenErrorText(re), Name)}
		}
		return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op,
			Err: fmt.Errorf("token endpoint: HTTP %d: %s", re.Response.StatusCode, tokenErrorText(re)), RetryAfter: restclient.ParseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())}
	}
	return &provider.Error{Kind: errkind.Transient, Provider: Name, Op: op, Err: fmt.Errorf("getting an access token: %w", err)}
}

func tokenErrorText(re *oauth2.RetrieveError) string {
	switch {
	case re.ErrorDescription != "":
		return re.ErrorDescription
	case re.ErrorCode != "":
		return re.ErrorCode
	}
	return restclient.Snippet(re.Body)
}

// malformedReply is a 2xx reply that does not decode: a proxy's page or a
// truncated body. Asking again is the right answer.
func malformedReply(op, method, path string, err error, raw []byte) error {
	return provider.Errorf(errkind.Transient, Name, op, "%s %s: malformed reply (%v): %s", method, path, err, restclient.Snippet(raw))
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
	var ae *apiError
	if !errors.As(err, &ae) || ae.Code != http.StatusConflict {
		return false
	}
	return ae.has("alreadyExists") || strings.Contains(strings.ToLower(ae.Message), "already exists")
}

// opError classifies the error of a finished operation. An operation can
// be DONE with an error but no httpErrorStatusCode (the official SDK's
// Wait took that for success), so the error list is what counts.
func opError(op string, o *operation) error {
	var errs []string
	var codes []string
	if o.Error != nil {
		for _, e := range o.Error.Errors {
			codes = append(codes, e.Code)
			errs = append(errs, strings.TrimSpace(e.Code+": "+e.Message))
		}
	}
	status := int(o.HTTPErrorStatusCode)
	if len(errs) == 0 && (status == 0 || (status >= 200 && status < 300)) {
		return nil
	}
	msg := strings.Join(errs, "; ")
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d %s", status, o.HTTPErrorMessage)
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
	return &provider.Error{Kind: kind, Provider: Name, Op: op, Err: fmt.Errorf("operation %s failed: %s", o.Name, msg)}
}

func anyIn(codes []string, set map[string]bool) bool {
	for _, c := range codes {
		if set[c] {
			return true
		}
	}
	return false
}

// wait polls the zonal operation o until it is DONE and returns its
// classified error. Polls that fail transiently are repeated: reading an
// operation is harmless, and giving up would leave the caller unsure
// whether the change happened.
func (p *Provider) wait(ctx context.Context, op, zone string, o *operation) error {
	// GCE finishes operations in seconds to minutes; one still running
	// after this is reported, and the retried action looks again.
	ctx, cancel := context.WithTimeout(ctx, maxOperationWait)
	defer cancel()
	path := p.zonePath(zone, "operations", o.Name)
	for !o.done() {
		if err := restclient.SleepCtx(ctx, p.opts.pollInterval); err != nil {
			return classify(op, fmt.Errorf("waiting for operation %s: %w", o.Name, err))
		}
		rctx, cancel := p.rctx(ctx)
		var next operation
		err := p.compute.Do(rctx, op, http.MethodGet, path, nil, &next)
		cancel()
		if err != nil {
			if errkind.Retryable(err) && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("polling operation %s: %w", o.Name, err)
		}
		*o = next
	}
	return opError(op, o)
}
