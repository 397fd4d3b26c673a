package server_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sagemathinc/cocalc-hosts/pkg/hosts"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/telemetry"
)

// otlpReceiver is an OTLP/HTTP collector's traces endpoint: it decodes
// the protobuf requests the exporter sends and keeps their spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	paths []string
	auth  []string
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP protobuf request", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.paths = append(rc.paths, r.URL.Path)
	rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
	rc.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp) //nolint:errcheck
}

// With otel.endpoint's exporter installed, a sim host's create job is
// one trace: the attempt ("host create") with its steps as children.
func TestTracesOfAHostCreate(t *testing.T) {
	rc := &otlpReceiver{}
	ts := httptest.NewServer(rc)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	// The headers come from otel.headers_file; the library's own
	// environment variables change neither them nor the address.
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=from-env")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
	headers := filepath.Join(t.TempDir(), "otel-headers")
	if err := os.WriteFile(headers, []byte("# the collector's key\nAuthorization: Bearer from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := telemetry.Setup(ctx, ts.URL, headers+".missing", "test"); err == nil || !strings.Contains(err.Error(), "otel.headers_file") {
		t.Fatalf("a missing headers file: %v", err)
	}
	shutdown, err := telemetry.Setup(ctx, ts.URL, headers, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	e := newEnv(t, "sqlite", nil)
	sub, err := e.srv.Hosts.Create(ctx, hosts.CreateRequest{Name: "tracebox", Owner: "alice", Provider: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.app.Handler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ran, err := queue.NewWorker(e.st, h).RunOne(ctx, sub.Job.ID); err != nil || !ran {
		t.Fatalf("run the create job: ran %t, %v", ran, err)
	}
	if err := shutdown(ctx); err != nil { // sends the batch
		t.Fatal(err)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.paths) == 0 || rc.paths[0] != "/v1/traces" {
		t.Fatalf("export requests to %v, want /v1/traces", rc.paths)
	}
	for _, a := range rc.auth {
		if a != "Bearer from-file" {
			t.Fatalf("export requests carried Authorization %q, want otel.headers_file's", rc.auth)
		}
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		byName[s.GetName()] = s
	}
	root := byName["host create"]
	if root == nil || len(root.GetParentSpanId()) != 0 {
		t.Fatalf("no root span \"host create\" among %d spans: %v", len(rc.spans), names(rc.spans))
	}
	var attrs = map[string]string{}
	for _, a := range root.GetAttributes() {
		attrs[a.GetKey()] = a.GetValue().GetStringValue()
	}
	if attrs["job.id"] != sub.Job.ID || attrs["host.id"] != sub.Host.ID {
		t.Fatalf("root span attributes: %v", attrs)
	}
	for _, step := range []string{"cloud create", "wait running"} {
		s := byName[step]
		if s == nil {
			t.Fatalf("no span %q among %v", step, names(rc.spans))
		}
		if hex.EncodeToString(s.GetTraceId()) != hex.EncodeToString(root.GetTraceId()) ||
			hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(root.GetSpanId()) {
			t.Fatalf("%q is not a child of \"host create\": trace %x parent %x; root trace %x span %x",
				step, s.GetTraceId(), s.GetParentSpanId(), root.GetTraceId(), root.GetSpanId())
		}
		if s.GetStartTimeUnixNano() < root.GetStartTimeUnixNano() || s.GetEndTimeUnixNano() > root.GetEndTimeUnixNano() {
			t.Fatalf("%q does not lie within its parent", step)
		}
		if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Fatalf("%q failed: %s", step, s.GetStatus().GetMessage())
		}
	}
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}
