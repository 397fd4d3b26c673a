package hyperstack

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

// client speaks the Infrahub API: JSON bodies, an api_key header, replies
// that carry {"status": true|false, "message": ...} next to their data
// (except the pricebook, a bare array), and errors as
// {"status": false, "message", "error_reason"}.
type client struct {
	base         string // e.g. https://infrahub-api.nexgencloud.com/v1
	credsFile    string
	http         *http.Client
	maxRetryWait time.Duration
	maxRetries   int
	// sleep waits d or until ctx ends; tests replace it to observe the
	// waits a 429 asks for without spending them.
	sleep func(ctx context.Context, d time.Duration) error
}

type apiError struct {
	Status      *bool  `json:"status"`
	Message     string `json:"message"`
	ErrorReason string `json:"error_reason"`
}

// apiKey reads the key on every call, so a rotated key file takes effect
// without a restart and a missing file is reported where it matters.
func (c *client) apiKey(op string) (string, error) {
	if c.credsFile == "" {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"no API key configured; run `cocalc-hosts providers add %s --credentials FILE` with a 0600 file holding a Hyperstack API key", Name)
	}
	b, err := secrets.Read(c.credsFile)
	if err != nil {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"cannot read the API key: %v; run `cocalc-hosts providers add %s --credentials FILE`", err, Name)
	}
	key := string(b)
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return "", provider.Errorf(provider.KindAuth, Name, op,
			"credentials file %s must hold exactly one Hyperstack API key; run `cocalc-hosts providers add %s --credentials FILE`", c.credsFile, Name)
	}
	return key, nil
}

// do sends one request and decodes the whole reply into out. A 429 is
// retried here while its Retry-After is short (the request was not
// processed); every other failure is classified and returned.
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
			wait = time.Second
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
	req.Header.Set("api_key", key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: %w", method, path, redact(err, key))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: read reply: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return classify(op, method, path, resp, raw)
	}
	// Some failures come back as 200 with "status": false.
	var ae apiError
	if json.Unmarshal(raw, &ae) == nil && ae.Status != nil && !*ae.Status {
		return classify(op, method, path, resp, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return provider.Errorf(provider.KindTransient, Name, op, "%s %s: unexpected reply: %v: %s", method, path, err, snippet(raw))
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
		msg = snippet(raw)
	}
	detail := fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
	if ae.ErrorReason != "" {
		detail += " " + ae.ErrorReason
	}
	detail += ": " + msg
	text := strings.ToLower(ae.ErrorReason + " " + msg)
	kind := provider.KindTransient
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		kind = provider.KindRateLimited
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind = provider.KindAuth
	case resp.StatusCode >= 500:
		kind = provider.KindTransient
	case containsAny(text, "insufficient stock", "out of stock", "no stock", "not enough capacity", "insufficient capacity", "no capacity", "not enough resources"):
		kind = provider.KindCapacity
	case containsAny(text, "quota", "limit exceeded", "limit reached", "insufficient credit", "insufficient balance"):
		kind = provider.KindQuota
	case resp.StatusCode == http.StatusNotFound || strings.Contains(text, "not_found"):
		kind = provider.KindNotFound
	case resp.StatusCode >= 400:
		kind = provider.KindInvalid
	}
	e := provider.Errorf(kind, Name, op, "%s", detail)
	if kind == provider.KindRateLimited {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
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
