package fakeapi

import (
	"net/http"
	"strings"
	"sync"
)

// Router serves a fake REST API: every route below a base path sits
// behind the cloud's authentication check, is counted, and fails with
// the next injected fault of the fake's type F that matches it.
type Router[F any] struct {
	mux          *http.ServeMux
	base         string
	authorized   func(*http.Request) bool
	unauthorized http.HandlerFunc
	// fail serves fault instead of h (see Serve).
	fail func(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, fault F)

	mu       sync.Mutex
	requests map[string]int // "METHOD /route" → count, faults included
	faults   Faults[F]
}

// NewRouter returns a router for routes below base. Requests authorized
// rejects get unauthorized's reply; fail serves an injected fault in the
// cloud's error format; unknown paths get notFound's reply.
func NewRouter[F any](base string, authorized func(*http.Request) bool, unauthorized, notFound http.HandlerFunc,
	fail func(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, fault F)) *Router[F] {
	rt := &Router[F]{mux: http.NewServeMux(), base: base, authorized: authorized, unauthorized: unauthorized,
		fail: fail, requests: map[string]int{}}
	rt.mux.HandleFunc("/", notFound)
	return rt
}

// Handle registers h for pattern "METHOD /path" (the path below base, as
// the cloud's spec writes it).
func (rt *Router[F]) Handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	rt.mux.HandleFunc(method+" "+rt.base+path, func(w http.ResponseWriter, r *http.Request) {
		if !rt.authorized(r) {
			rt.unauthorized(w, r)
			return
		}
		rt.mu.Lock()
		rt.requests[pattern]++
		fault, hit := rt.faults.Take(method, path)
		rt.mu.Unlock()
		if hit {
			rt.fail(w, r, h, fault)
			return
		}
		h(w, r)
	})
}

func (rt *Router[F]) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

// Inject adds a fault for the next times matching requests (0 means 1);
// an empty method or path matches any.
func (rt *Router[F]) Inject(method, path string, times int, fault F) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.faults.Add(method, path, times, fault)
}

// Requests counts the requests served for a route pattern, faults
// included.
func (rt *Router[F]) Requests(pattern string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.requests[pattern]
}
