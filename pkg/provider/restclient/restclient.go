// Package restclient is the HTTP half the REST providers (Hyperstack,
// Lambda, GCP) share: the API key read from a 0600 file on every call, JSON
// request bodies, retrying a 429 while its Retry-After is short, and
// classifying transport failures. What a cloud's replies and errors look
// like stays in the provider, behind Classify and Decode.
package restclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// Client sends JSON requests to one cloud's REST API.
type Client struct {
	Provider  string // provider name, for errors and the fix-it hint
	KeyName   string // what the credentials file holds, e.g. "Lambda Cloud API key"
	Base      string // the API root, no trailing slash
	CredsFile string
	HTTP      *http.Client
	MaxReply  int64 // bytes of a reply read at most
	// MaxRetryWait bounds how long one call waits on a 429 before
	// handing the Retry-After to the caller (the queue) instead.
	MaxRetryWait time.Duration
	MaxRetries   int
	// DefaultRetryWait is the wait on a 429 that names none.
	DefaultRetryWait time.Duration
	// Sleep waits d or until ctx ends; tests replace it to observe the
	// waits a 429 asks for without spending them.
	Sleep func(ctx context.Context, d time.Duration) error
	// Token, when set, supplies the credential instead of APIKey, for a
	// cloud whose key file is exchanged for short-lived tokens (GCP).
	Token func(ctx context.Context, op string) (string, error)
	// Authorize puts the API key (or token) on a request.
	Authorize func(req *http.Request, key string)
	// Classify turns a reply with a non-2xx status into a provider error.
	Classify func(op, method, path string, resp *http.Response, raw []byte) error
	// Decode reads a 2xx reply into out (which may be nil), or returns
	// the provider error a reply that reports failure stands for.
	Decode func(op, method, path string, resp *http.Response, raw []byte, out any) error
	// OnCall, when set, is told of each request sent (provider.Config.OnCall).
	OnCall func(op string, took time.Duration, err error)
}

// APIKey reads the key on every call, so a rotated key file takes effect
// without a restart and a missing file is reported where it matters.
func (c *Client) APIKey(op string) (string, error) {
	if c.CredsFile == "" {
		return "", provider.Errorf(errkind.Auth, c.Provider, op,
			"no API key configured; run `cocalc-hosts providers add %s --credentials FILE` with a 0600 file holding a %s", c.Provider, c.KeyName)
	}
	b, err := secrets.Read(c.CredsFile)
	if err != nil {
		return "", provider.Errorf(errkind.Auth, c.Provider, op,
			"cannot read the API key: %v; run `cocalc-hosts providers add %s --credentials FILE`", err, c.Provider)
	}
	key := string(b)
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return "", provider.Errorf(errkind.Auth, c.Provider, op,
			"credentials file %s must hold exactly one %s; run `cocalc-hosts providers add %s --credentials FILE`", c.CredsFile, c.KeyName, c.Provider)
	}
	return key, nil
}

// Do sends one request with in (if not nil) as its JSON body and decodes
// the reply into out. A 429 is retried here while its Retry-After is
// short (the request was not processed, so even a launch is safe to
// repeat); every other failure is classified and returned for the caller
// to retry or not.
func (c *Client) Do(ctx context.Context, op, method, path string, in, out any) error {
	var key string
	var err error
	if c.Token != nil {
		key, err = c.Token(ctx, op)
	} else {
		key, err = c.APIKey(op)
	}
	if err != nil {
		return err
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode request: %w", c.Provider, op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, op, method, path, key, body, out)
		wait := errkind.RetryAfter(err)
		if errkind.Of(err) != errkind.RateLimited || attempt >= c.MaxRetries || wait > c.MaxRetryWait {
			return err
		}
		if wait <= 0 {
			wait = c.DefaultRetryWait
		}
		if serr := c.Sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

func (c *Client) once(ctx context.Context, op, method, path, key string, body []byte, out any) (err error) {
	if c.OnCall != nil {
		start := time.Now()
		defer func() { c.OnCall(op, time.Since(start), err) }()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return provider.Errorf(errkind.Invalid, c.Provider, op, "build request: %v", err)
	}
	c.Authorize(req, key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		// Timeouts, resets, refused connections: the call may or may not
		// have reached the cloud; callers make every action idempotent.
		return provider.Errorf(errkind.Transient, c.Provider, op, "%s %s: %w", method, path, redact(err, key))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxReply))
	if err != nil {
		return provider.Errorf(errkind.Transient, c.Provider, op, "%s %s: read reply: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return c.Classify(op, method, path, resp, raw)
	}
	return c.Decode(op, method, path, resp, raw, out)
}

// MaxRetryAfter caps the wait a Retry-After header can ask for: a server
// asking for more (or for so many seconds that they overflow, as fuzzing
// found) is asked again after a day.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3). Zero means none given.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		if s > int(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}

// Snippet is the start of a reply body, for error text.
func Snippet(b []byte) string {
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

// SleepCtx waits d or until ctx ends.
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Number is a JSON number that clouds also serialize as a string ("80"):
// Lambda's spec example writes its integer prices that way, and
// Hyperstack's prices have been seen so. Both are read; NaN, infinities
// and anything else are errors.
type Number float64

func (n *Number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%s is not a number", string(b))
	}
	*n = Number(f)
	return nil
}
