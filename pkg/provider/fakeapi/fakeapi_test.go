package fakeapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFaultsMatchAndUseUp(t *testing.T) {
	var q Faults[string]
	q.Add("POST", "/launch", 2, "launch")
	q.Add("", "", 0, "any")
	if _, hit := q.Take("GET", "/instances"); !hit {
		t.Fatal("a fault with empty method and path must match any request")
	}
	if _, hit := q.Take("GET", "/instances"); hit {
		t.Fatal("Times 0 must mean one use")
	}
	for i := range 2 {
		if f, hit := q.Take("POST", "/launch"); !hit || f != "launch" {
			t.Fatalf("use %d: got %q, %v", i+1, f, hit)
		}
	}
	if f, hit := q.Take("POST", "/launch"); hit {
		t.Fatalf("a fault for 2 requests hit a third: %q", f)
	}
}

func TestServe(t *testing.T) {
	ran := false
	h := func(w http.ResponseWriter, r *http.Request) { ran = true; w.WriteHeader(http.StatusCreated) }
	rec := httptest.NewRecorder()
	Serve(rec, httptest.NewRequest("POST", "/x", strings.NewReader("{}")), h, Failure{RetryAfter: "3", AfterEffect: true},
		func(w http.ResponseWriter, status int) { w.WriteHeader(status) })
	if !ran {
		t.Error("AfterEffect did not run the handler")
	}
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Retry-After") != "3" || rec.Header().Get(FaultHeader) == "" {
		t.Errorf("reply %d, headers %v: want 500 with Retry-After 3 and the fault mark", rec.Code, rec.Header())
	}
	ran = false
	Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil), h, Failure{Status: 429},
		func(w http.ResponseWriter, status int) {
			if status != 429 {
				t.Errorf("status %d, want 429", status)
			}
		})
	if ran {
		t.Error("without AfterEffect the handler must not run")
	}
}
