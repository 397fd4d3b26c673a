package fakeapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouter(t *testing.T) {
	rt := NewRouter("/v1",
		func(r *http.Request) bool { return r.Header.Get("key") == "k" },
		func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) },
		func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) },
		func(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, status int) {
			Serve(w, r, h, Failure{Status: status}, func(w http.ResponseWriter, status int) { w.WriteHeader(status) })
		})
	rt.Handle("GET /things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	get := func(path, key string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("key", key)
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := get("/v1/things/1", "k"); c != http.StatusOK {
		t.Fatalf("authorized: %d", c)
	}
	if c := get("/v1/things/1", "wrong"); c != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", c)
	}
	if c := get("/v1/nothing", "k"); c != http.StatusTeapot {
		t.Fatalf("unknown path: %d", c)
	}
	rt.Inject("GET", "/things/{id}", 1, http.StatusServiceUnavailable)
	if c := get("/v1/things/2", "k"); c != http.StatusServiceUnavailable {
		t.Fatalf("injected fault: %d", c)
	}
	if c := get("/v1/things/2", "k"); c != http.StatusOK {
		t.Fatalf("after the fault is used up: %d", c)
	}
	// Counted: authorized requests, faults included.
	if n := rt.Requests("GET /things/{id}"); n != 3 {
		t.Fatalf("%d requests counted, want 3", n)
	}
}
