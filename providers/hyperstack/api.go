package hyperstack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
)

// newClient speaks the Infrahub API: JSON bodies, an api_key header,
// replies that carry {"status": true|false, "message": ...} next to their
// data (except the pricebook, a bare array), and errors as
// {"status": false, "message", "error_reason"}.
func newClient(o options, credsFile string, onCall func(string, time.Duration, error)) *restclient.Client {
	return &restclient.Client{
		OnCall:   onCall,
		Provider: Name, KeyName: "Hyperstack API key",
		Base: o.endpoint, CredsFile: credsFile, HTTP: &http.Client{Timeout: o.timeout},
		MaxReply:     64 << 20,
		MaxRetryWait: o.maxRetryWait, MaxRetries: o.maxRetries, DefaultRetryWait: time.Second,
		Sleep:     restclient.SleepCtx,
		Authorize: func(req *http.Request, key string) { req.Header.Set("api_key", key) },
		Classify:  classify,
		Decode:    decode,
	}
}

type apiError struct {
	Status      *bool  `json:"status"`
	Message     string `json:"message"`
	ErrorReason string `json:"error_reason"`
}

// decode reads the whole reply into out.
func decode(op, method, path string, resp *http.Response, raw []byte, out any) error {
	// Some failures come back as 200 with "status": false.
	var ae apiError
	if json.Unmarshal(raw, &ae) == nil && ae.Status != nil && !*ae.Status {
		return classify(op, method, path, resp, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return provider.Errorf(errkind.Transient, Name, op, "%s %s: unexpected reply: %v: %s", method, path, err, restclient.Snippet(raw))
	}
	return nil
}

// classify turns a failed call into a provider error. Infrahub documents
// statuses (400, 401, 404, 409, 500) and free-text messages; capacity and
// quota problems are recognized by their wording, since the API has no
// codes for them.
func classify(op, method, path string, resp *http.Response, raw []byte) error {
	var ae apiError
	_ = json.Unmarshal(raw, &ae)
	msg := ae.Message
	if msg == "" {
		msg = restclient.Snippet(raw)
	}
	detail := fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
	if ae.ErrorReason != "" {
		detail += " " + ae.ErrorReason
	}
	detail += ": " + msg
	text := strings.ToLower(ae.ErrorReason + " " + msg)
	kind := errkind.Transient
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		kind = errkind.RateLimited
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind = errkind.Auth
	case resp.StatusCode >= 500:
		kind = errkind.Transient
	case containsAny(text, "insufficient stock", "out of stock", "no stock", "not enough capacity", "insufficient capacity", "no capacity", "not enough resources"):
		kind = errkind.Capacity
	case containsAny(text, "quota", "limit exceeded", "limit reached", "insufficient credit", "insufficient balance"):
		kind = errkind.Quota
	case resp.StatusCode == http.StatusNotFound || strings.Contains(text, "not_found"):
		kind = errkind.NotFound
	case resp.StatusCode >= 400:
		kind = errkind.Invalid
	}
	e := provider.Errorf(kind, Name, op, "%s", detail)
	if kind == errkind.RateLimited {
		e.RetryAfter = restclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
