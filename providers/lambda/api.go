package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// client speaks the Lambda Cloud API v1: JSON bodies, a {"data": ...}
// envelope on success and {"error": {"code", "message", "suggestion"}} on
// failure, Bearer authentication.
type client struct {
	base      string // e.g. https://cloud.lambda.ai/api/v1, no trailing slash
	credsFile string
	http      *http.Client
	// maxRetryWait bounds how long one call waits on a 429 before
	// handing the Retry-After to the caller (the queue) instead.
	maxRetryWait time.Duration
	maxRetries   int
	// sleep waits d or until ctx ends; tests replace it to observe the
	// waits a 429 asks for without spending them.
	sleep func(ctx context.Context, d time.Duration) error
}

// apiError is Lambda's error body.
type apiError struct {
	Error struct {
		Code       string  `json:"code"`
		Message    string  `json:"message"`
		Suggestion *string `json:"suggestion"`
	} `json:"error"`
}

// apiKey reads the key on every call, so a rotated key file takes effect
// without a restart and a missing file is reported where it matters.
func (c *client) apiKey(op string) (string, error) {
	if c.credsFile == "" {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"no API key configured; run `cocalc-hosts providers add %s --credentials FILE` with a 0600 file holding a Lambda Cloud API key", Name)
	}
	b, err := secrets.Read(c.credsFile)
	if err != nil {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"cannot read the API key: %v; run `cocalc-hosts providers add %s --credentials FILE`", err, Name)
	}
	key := string(b)
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"credentials file %s must hold exactly one Lambda Cloud API key; run `cocalc-hosts providers add %s --credentials FILE`", c.credsFile, Name)
	}
	return key, nil
}

// do sends one request and decodes the "data" member of the reply into
// out. A 429 is retried here while its Retry-After is short (the request
// was not processed, so even a launch is safe to repeat); every other
// failure is classified and returned for the caller to retry or not.
func (c *client) do(ctx context.Context, op, method, path string, in, out any) error {
	key, err := c.apiKey(op)
	if err != nil {
		return err
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode request: %w", Name, op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, op, method, path, key, body, out)
		wait := provider.RetryAfter(err)
		if provider.KindOf(err) != provider.KindRateLimited || attempt >= c.maxRetries || wait > c.maxRetryWait {
			return err
		}
		if wait <= 0 {
			wait = time.Second // Lambda allows about one request a second
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

func (c *client) once(ctx context.Context, op, method, path, key string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return provider.Errorf(provider.KindInvalid, Name, op, "build request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Timeouts, resets, refused connections: the call may or may not
		// have reached Lambda; callers make every action idempotent.
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: %w", method, path, redact(err, key))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: read reply: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return classify(op, method, path, resp, raw)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Data) == 0 || string(env.Data) == "null" {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: reply is not a {\"data\": ...} JSON document: %s", method, path, snippet(raw))
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: unexpected reply: %v", method, path, err)
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
		msg = snippet(raw)
	}
	if ae.Error.Suggestion != nil && *ae.Error.Suggestion != "" {
		msg += " (" + *ae.Error.Suggestion + ")"
	}
	detail := fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
	if code != "" {
		detail += " " + code
	}
	detail += ": " + msg
	kind := provider.KindTransient
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		kind = provider.KindRateLimited
	case code == "instance-operations/launch/insufficient-capacity":
		kind = provider.KindCapacity
	case code == "global/quota-exceeded":
		kind = provider.KindQuota
	case code == "global/invalid-api-key" || code == "global/account-inactive" ||
		resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind = provider.KindAuth
	case code == "global/object-does-not-exist" || resp.StatusCode == http.StatusNotFound:
		kind = provider.KindNotFound
	case resp.StatusCode >= 500:
		kind = provider.KindTransient
	case resp.StatusCode >= 400:
		kind = provider.KindInvalid
	}
	e := provider.Errorf(kind, Name, op, "%s", detail)
	if kind == provider.KindRateLimited {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3). Zero means none given.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

// redact keeps the API key out of error text, should a transport error
// ever quote a header.
func redact(err error, key string) error {
	if key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), key, "[redacted]"))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
