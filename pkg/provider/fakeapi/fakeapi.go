// Package fakeapi is what the in-repo REST cloud fakes (hyperstackfake,
// lambdafake) share: a router with authentication, request counts and
// fault injection, a queue of injected faults, and the way a fault is
// served (a hang, the request taking effect before the error,
// Retry-After, the FaultHeader mark). What the error body looks like
// stays in each fake.
package fakeapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"time"
)

// FaultHeader marks replies made by an injected fault, so a spec checker
// can leave their bodies alone.
const FaultHeader = "X-Fake-Fault"

// Faults is a queue of injected faults of a fake's own type F (which
// carries the cloud's error details). It does no locking: its owner (a
// Router) holds a lock around Add and Take.
type Faults[F any] struct {
	queue []*queued[F]
}

type queued[F any] struct {
	method, path string
	times        int
	fault        F
}

// Add queues fault for the next times requests (at least one) matching
// method and path, the route as the spec writes it; empty matches any.
func (q *Faults[F]) Add(method, path string, times int, fault F) {
	if times <= 0 {
		times = 1
	}
	q.queue = append(q.queue, &queued[F]{method: method, path: path, times: times, fault: fault})
}

// Take returns the first fault that matches a request and uses it up
// once.
func (q *Faults[F]) Take(method, path string) (F, bool) {
	for i, e := range q.queue {
		if (e.method == "" || e.method == method) && (e.path == "" || e.path == path) {
			e.times--
			if e.times <= 0 {
				q.queue = append(q.queue[:i], q.queue[i+1:]...)
			}
			return e.fault, true
		}
	}
	var none F
	return none, false
}

// Failure is how a fault is served.
type Failure struct {
	Status     int           // default 500
	RetryAfter string        // sent as Retry-After when not empty
	Hang       time.Duration // delay the reply this long, or until the client gives up
	// AfterEffect performs the request first, then replies with the
	// fault: the "error after create" case.
	AfterEffect bool
}

// Serve replies to r with f, running h first (its reply discarded) when
// f.AfterEffect; writeError writes the cloud's error body for status.
func Serve(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, f Failure, writeError func(w http.ResponseWriter, status int)) {
	if f.Hang > 0 {
		// Read the body now: after the client gives up, the
		// connection may be gone, and AfterEffect still needs it.
		body, _ := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		t := time.NewTimer(f.Hang)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	if f.AfterEffect {
		h(httptest.NewRecorder(), r)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.Header().Set(FaultHeader, "1")
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	writeError(w, status)
}
