// Package client is the HTTP client of a cocalc-hosts server (pkg/server).
// It implements the same service interfaces as the domain services that
// the command layer uses in direct mode, so that every command runs
// unchanged against a server: errors come back with their kind (and so
// their exit code), and a missing host or project is still an
// *errkind.NotFoundError.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/server"
	"github.com/sagemathinc/cocalc-hosts/pkg/tunnel"
)

// Client calls one server with one API key.
type Client struct {
	base *url.URL
	key  string
	http *http.Client
}

// New returns a client of the server at base (http:// or https://)
// authenticating with key.
func New(base, key string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, errkind.Errorf(errkind.Invalid, "server.url %q: want http(s)://HOST[:PORT]", base)
	}
	u.Path = ""
	// No overall timeout: job waits are long polls, bounded by the server
	// and by the caller's context.
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &Client{base: u, key: key, http: &http.Client{Transport: t}}, nil
}

// TrustCA makes the client trust the certificates in the PEM file (a
// private CA, or the server's own self-signed certificate) besides the
// system's roots: server.ca_cert, set by `login --ca-cert`.
func (c *Client) TrustCA(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "server.ca_cert: %v; give a PEM certificate file with `cocalc-hosts login --server URL --ca-cert FILE`", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return errkind.Errorf(errkind.Invalid, "server.ca_cert: %s holds no PEM certificate; give the CA's (or the server's) certificate in PEM", file)
	}
	c.http.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
	return nil
}

// URL is the server's address.
func (c *Client) URL() string { return c.base.String() }

// call sends body (nil: none) to path as JSON and decodes the result into
// out (nil: discard). as is the account an admin acts for.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, as string, body, out any) error {
	resp, err := c.open(ctx, method, path, q, as, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return c.unreachable(ctx, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return errkind.Errorf(errkind.Internal, "%s %s: the server's answer is not what this client expects (%v); are client and server the same version?", method, resp.Request.URL.Path, err)
	}
	return nil
}

// open sends a request and returns the answer when it is a success (the
// caller reads and closes its body), else the server's error.
func (c *Client) open(ctx context.Context, method, path string, q url.Values, as string, body any, accept string) (*http.Response, error) {
	u := c.apiURL(path)
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if as != "" {
		req.Header.Set(server.AsHeader, as)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, c.unreachable(ctx, err)
		}
		return nil, c.apiError(resp, data)
	}
	return resp, nil
}

// unreachable says, in one line, that the server could not be reached and
// what to check.
func (c *Client) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") {
		return errkind.Errorf(errkind.Unavailable, "TLS with the server at %s (server.url) failed: %v; check the server's certificate and address, and if a private CA signed it, trust it with `cocalc-hosts login --server URL --ca-cert FILE`", c.base, err)
	}
	return errkind.Errorf(errkind.Unavailable, "cannot reach the server at %s (server.url): %v; check that `cocalc-hosts serve` runs there, or `cocalc-hosts login --server URL` (or `cocalc-hosts logout` to use the database directly)", c.base, err)
}

// apiError rebuilds the server's error with its kind.
func (c *Client) apiError(resp *http.Response, data []byte) error {
	var body server.ErrorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Error.Kind == "" {
		return errkind.Errorf(errkind.Unavailable, "%s (server.url) answered HTTP %d without an API error; is it a cocalc-hosts server?", c.base, resp.StatusCode)
	}
	return c.wireError(body.Error, resp.Header.Get("Retry-After"))
}

// wireError rebuilds an error the server sent (retryAfter: its
// Retry-After, if any).
func (c *Client) wireError(e server.WireError, retryAfter string) error {
	k, _ := errkind.Parse(e.Kind)
	if k == errkind.NotFound && e.Type != "" {
		return &errkind.NotFoundError{Type: e.Type, Name: e.Name}
	}
	if k == errkind.Auth {
		return errkind.Errorf(k, "%s; log in again with `cocalc-hosts login --server %s`", e.Message, c.base)
	}
	if d := retryAfter; d != "" && k == errkind.RateLimited {
		if s, err := time.ParseDuration(d + "s"); err == nil {
			return &rateLimited{msg: e.Message, after: s}
		}
	}
	return errkind.New(k, e.Message)
}

type rateLimited struct {
	msg   string
	after time.Duration
}

func (e *rateLimited) Error() string             { return e.msg }
func (e *rateLimited) ErrorKind() errkind.Kind   { return errkind.RateLimited }
func (e *rateLimited) RetryDelay() time.Duration { return e.after }

var _ interface{ RetryDelay() time.Duration } = (*rateLimited)(nil)

// get, post and del are call for each method, decoding into a T.
func get[T any](ctx context.Context, c *Client, path string, q url.Values, as string) (T, error) {
	var out T
	err := c.call(ctx, http.MethodGet, path, q, as, nil, &out)
	return out, err
}

func post[T any](ctx context.Context, c *Client, path, as string, body any) (T, error) {
	var out T
	err := c.call(ctx, http.MethodPost, path, nil, as, body, &out)
	return out, err
}

func del[T any](ctx context.Context, c *Client, path, as string) (T, error) {
	var out T
	err := c.call(ctx, http.MethodDelete, path, nil, as, nil, &out)
	return out, err
}

// each decodes a JSON array from path element by element as it arrives,
// calling fn with each (the element is reused for the next), so that a
// long listing is neither held whole nor waited for before the first.
func each[T any](ctx context.Context, c *Client, path string, q url.Values, as string, fn func(*T) error) error {
	resp, err := c.open(ctx, http.MethodGet, path, q, as, nil, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10))
	unexpected := func(err error) error {
		return errkind.Errorf(errkind.Internal, "GET %s: the server's answer is not what this client expects (%v); are client and server the same version?", resp.Request.URL.Path, err)
	}
	bad := func(err error) error {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			return unexpected(err)
		}
		return c.unreachable(ctx, err) // the connection failed mid-answer (a cut answer: io.ErrUnexpectedEOF)
	}
	if t, err := dec.Token(); err != nil {
		return bad(err)
	} else if t != json.Delim('[') {
		return unexpected(fmt.Errorf("want a JSON array, got %v", t))
	}
	var v T
	for dec.More() {
		var zero T
		v = zero
		if err := dec.Decode(&v); err != nil {
			return bad(err)
		}
		if err := fn(&v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad(err)
	}
	return nil
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// apiURL is the server's URL of an API path whose segments are escaped
// already (seg): sent as it is, not escaped a second time.
func (c *Client) apiURL(path string) url.URL {
	u := *c.base
	u.RawPath = server.Prefix + path
	u.Path, _ = url.PathUnescape(u.RawPath) // seg's output always unescapes
	return u
}

// Exec runs req in project id through the server, which relays the
// session to the project's agent (see server.execProject): output streams
// to eio as it comes, and the command's exit code is returned.
func (c *Client) Exec(ctx context.Context, as, id string, req agentapi.ExecRequest, eio agentapi.ExecIO) (int, error) {
	u := c.apiURL("/projects/" + seg(id) + "/exec")
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return -1, errkind.Wrap(errkind.Invalid, err)
	}
	if err := agentapi.SetExecHeaders(hr.Header, req); err != nil {
		return -1, err
	}
	hr.Header.Set("Authorization", "Bearer "+c.key)
	if as != "" {
		hr.Header.Set(server.AsHeader, as)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return -1, c.unreachable(ctx, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return -1, c.apiError(resp, data)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return -1, errkind.Errorf(errkind.Unavailable, "%s (server.url) did not hand over the connection for exec; is a proxy in front of it without connection upgrades?", c.base)
	}
	code, err := agentapi.Session(ctx, conn, req, eio, func(p []byte) error {
		var we server.WireError
		if json.Unmarshal(p, &we) != nil || we.Kind == "" {
			return errkind.Errorf(errkind.Internal, "exec through %s: %s", c.base, p)
		}
		return c.wireError(we, "")
	})
	var kinded errkind.Kinded
	switch {
	case err != nil && ctx.Err() != nil:
		return code, ctx.Err()
	case err != nil && !errors.As(err, &kinded):
		// The connection broke: the server or a proxy went away.
		return code, errkind.Errorf(errkind.Transient, "exec through %s (server.url): %v", c.base, err)
	}
	return code, err
}

// BuildImage builds an image on a host through the server, telling
// progress each line of the build as it comes.
func (c *Client) BuildImage(ctx context.Context, as, host string, r server.ImageBuildRequest, progress func(string)) (server.ImageBuilt, error) {
	resp, err := c.open(ctx, http.MethodPost, "/hosts/"+url.PathEscape(host)+"/images/build", nil, as, r, "application/x-ndjson")
	if err != nil {
		return server.ImageBuilt{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l server.BuildLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return server.ImageBuilt{}, errkind.Errorf(errkind.Internal, "image build through %s: a line that is not what this client expects (%v); are client and server the same version?", c.base, err)
		}
		switch {
		case l.Error != nil:
			return server.ImageBuilt{}, c.wireError(*l.Error, "")
		case l.Result != nil:
			return *l.Result, nil
		case progress != nil:
			progress(l.Progress)
		}
	}
	if ctx.Err() != nil {
		return server.ImageBuilt{}, ctx.Err()
	}
	return server.ImageBuilt{}, errkind.Errorf(errkind.Transient, "image build through %s (server.url): the answer ended before the build did (%v); `cocalc-hosts image list --host %s` shows whether it is there", c.base, sc.Err(), host)
}

// Whoami asks the server who the key is.
func (c *Client) Whoami(ctx context.Context) (server.Whoami, error) {
	return get[server.Whoami](ctx, c, "/whoami", nil, "")
}

// Ping checks that base is a cocalc-hosts server and that it is ready.
func (c *Client) Ping(ctx context.Context) error {
	u := *c.base
	u.Path = "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unreachable(ctx, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return c.apiError(resp, data)
	}
	return nil
}

func boolQ(q url.Values, name string, v bool) {
	if v {
		q.Set(name, "true")
	}
}

// follow reads the server's event stream of a job: each "job" event goes
// to onEvent, and "end" carries the job as it ended. ended is false when
// the stream stopped before that.
func (c *Client) follow(ctx context.Context, jobID string, onEvent func(queue.Event)) (job model.Job, ended bool, err error) {
	resp, err := c.open(ctx, http.MethodGet, "/jobs/"+url.PathEscape(jobID)+"/events", nil, "", nil, "text/event-stream")
	if err != nil {
		return job, false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event, data string
	sawEnd := false // a done or failed event came
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && event != "":
			switch event {
			case "job":
				var e queue.Event
				if json.Unmarshal([]byte(data), &e) == nil {
					sawEnd = sawEnd || e.Kind == queue.EventDone || e.Kind == queue.EventFailed
					onEvent(e)
				}
			case "end":
				if err := json.Unmarshal([]byte(data), &job); err != nil {
					return job, false, nil
				}
				if !sawEnd {
					// Another process ran it: say how it ended.
					onEvent(jobEvent(job))
				}
				return job, true, nil
			}
			event, data = "", ""
		}
	}
	if ctx.Err() != nil {
		return job, false, ctx.Err()
	}
	return job, false, nil
}

// Tunnel is the machine's end of a reverse-connected host's tunnel to
// this server, with the server's trusted certificates (TrustCA).
func (c *Client) Tunnel(credential func() (string, error), targets map[string]func(context.Context) (net.Conn, error)) *tunnel.Client {
	u := *c.base
	u.Scheme = map[string]string{"https": "wss", "http": "ws"}[u.Scheme]
	u.Path = tunnel.Path
	return &tunnel.Client{URL: u.String(), HTTP: c.http, Credential: credential, Targets: targets}
}

// Relay opens a connection to a reverse-connected host's ingress (target
// https or ssh) through the server (see server.relayIngress).
func (c *Client) Relay(ctx context.Context, host, target string) (io.ReadWriteCloser, error) {
	u := c.apiURL("/hosts/" + seg(host) + "/relay/" + seg(target))
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err)
	}
	hr.Header.Set("Connection", "Upgrade")
	hr.Header.Set("Upgrade", server.RelayUpgrade)
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, c.apiError(resp, data)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errkind.Errorf(errkind.Unavailable, "%s (server.url) did not hand over the connection for the relay; is a proxy in front of it without connection upgrades?", c.base)
	}
	return conn, nil
}
