package lambda

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/restclient"
)

// newClient speaks the Lambda Cloud API v1: JSON bodies, a {"data": ...}
// envelope on success and {"error": {"code", "message", "suggestion"}} on
// failure, Bearer authentication.
func newClient(o options, credsFile string, onCall func(string, time.Duration, error)) *restclient.Client {
	return &restclient.Client{
		OnCall:   onCall,
		Provider: Name, KeyName: "Lambda Cloud API key",
		Base: o.endpoint, CredsFile: credsFile, HTTP: &http.Client{Timeout: o.timeout},
		MaxReply:     32 << 20,
		MaxRetryWait: o.maxRetryWait, MaxRetries: o.maxRetries,
		DefaultRetryWait: time.Second, // Lambda allows about one request a second
		Sleep:            restclient.SleepCtx,
		Authorize:        func(req *http.Request, key string) { req.Header.Set("Authorization", "Bearer "+key) },
		Classify:         classify,
		Decode:           decode,
	}
}

// apiError is Lambda's error body.
type apiError struct {
	Error struct {
		Code       string  `json:"code"`
		Message    string  `json:"message"`
		Suggestion *string `json:"suggestion"`
	} `json:"error"`
}

// decode reads the "data" member of the reply into out.
func decode(op, method, path string, resp *http.Response, raw []byte, out any) error {
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Data) == 0 || string(env.Data) == "null" {
		return provider.Errorf(errkind.Transient, Name, op, "%s %s: reply is not a {\"data\": ...} JSON document: %s", method, path, restclient.Snippet(raw))
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return provider.Errorf(errkind.Transient, Name, op, "%s %s: unexpected reply: %v", method, path, err)
	}
	return nil
}

// classify turns an HTTP failure into a provider error. Lambda's error
// code is more precise than the status (an insufficient-capacity launch
// is a 400), so it wins when present.
func classify(op, method, path string, resp *http.Response, raw []byte) error {
	var ae apiError
	_ = json.Unmarshal(raw, &ae)
	code, msg := ae.Error.Code, ae.Error.Message
	if msg == "" {
		msg = restclient.Snippet(raw)
	}
	if ae.Error.Suggestion != nil && *ae.Error.Suggestion != "" {
		msg += " (" + *ae.Error.Suggestion + ")"
	}
	detail := fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
	if code != "" {
		detail += " " + code
	}
	detail += ": " + msg
	kind := errkind.Transient
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		kind = errkind.RateLimited
	case code == "instance-operations/launch/insufficient-capacity":
		kind = errkind.Capacity
	case code == "global/quota-exceeded":
		kind = errkind.Quota
	case code == "global/invalid-api-key" || code == "global/account-inactive" ||
		resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind = errkind.Auth
	case code == "global/object-does-not-exist" || resp.StatusCode == http.StatusNotFound:
		kind = errkind.NotFound
	case resp.StatusCode >= 500:
		kind = errkind.Transient
	case resp.StatusCode >= 400:
		kind = errkind.Invalid
	}
	e := provider.Errorf(kind, Name, op, "%s", detail)
	if kind == errkind.RateLimited {
		e.RetryAfter = restclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}
